"""Peak resident memory of this process (and its children) while a block runs, for the benchmarks.

On Linux the kernel keeps the process's peak resident size (``VmHWM``) and lets the process reset it (write
5 to ``/proc/self/clear_refs``), so the peak is exact and costs nothing while the block runs. A thread that
sampled it every 5 ms instead cost the measured flow ~7 % of one core and a GIL hand-over every 5 ms (py-spy
on a 600-document ingest: 11 s of 146). Elsewhere it falls back to that sampling. Children (the parser
worker, the Milvus Lite server, the validation worker) are sampled every 200 ms: cheap, and they are not
what the targets measure.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_PEAK = "5"  # clear_refs: reset the peak resident set size (Linux >= 4.0)


def _kernel_peak() -> int | None:
    """This process's peak resident bytes since start or the last reset; None where /proc lacks it."""
    with suppress(OSError):
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), flags=re.MULTILINE)
        if found:
            return int(found.group(1)) * 1024
    return None


def _reset_kernel_peak() -> bool:
    with suppress(OSError):
        _CLEAR_REFS.write_text(_RESET_PEAK)
        return True
    return False


class PeakMemory:
    """The peak resident size of this process while ``watch()`` runs, and of its children (sampled)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = 0
        self.children_peak = 0
        self._stop = threading.Event()
        self._sample_self = True

    def resting(self) -> int:
        return int(self._process.memory_info().rss)

    @contextmanager
    def watch(self) -> Iterator[None]:
        self.peak = self.resting()
        self.children_peak = 0
        self._sample_self = not (_reset_kernel_peak() and _kernel_peak() is not None)
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()
            if not self._sample_self:
                self.peak = max(self.peak, _kernel_peak() or 0)

    def _sample(self) -> None:
        period = 0.005 if self._sample_self else 0.2
        children_every = max(int(0.2 / period), 1)
        ticks = 0
        while not self._stop.is_set():
            if self._sample_self:
                self.peak = max(self.peak, self._process.memory_info().rss)
            if ticks % children_every == 0:
                self.children_peak = max(self.children_peak, self._children_rss())
            ticks += 1
            self._stop.wait(period)

    def _children_rss(self) -> int:
        total = 0
        for child in self._process.children(recursive=True):
            with suppress(psutil.Error):  # a child that exited meanwhile
                total += child.memory_info().rss
        return total


def _main() -> None:  # a self-check: python benchmarks/peak_memory.py
    memory = PeakMemory()
    with memory.watch():
        block = bytearray(200_000_000)
        block[::4096] = b"\1" * len(block[::4096])
        del block
        time.sleep(0.05)
    print(f"peak above resting: {(memory.peak - memory.resting()) / 1e6:.0f} MB (expect ~200)")


if __name__ == "__main__":
    _main()
