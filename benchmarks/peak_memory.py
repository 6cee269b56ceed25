"""Peak resident memory of this process (and its children) while a block runs, for the benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psutil


class PeakMemory:
    """Samples this process's resident size every 5 ms and keeps the peak (and its children's, less often)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = 0
        self.children_peak = 0
        self._stop = threading.Event()

    def resting(self) -> int:
        return int(self._process.memory_info().rss)

    @contextmanager
    def watch(self) -> Iterator[None]:
        self.peak = self.resting()
        self.children_peak = 0
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()

    def _sample(self) -> None:
        ticks = 0
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            if ticks % 20 == 0:  # the parser worker and the Milvus Lite server, every 100 ms
                self.children_peak = max(self.children_peak, self._children_rss())
            ticks += 1
            time.sleep(0.005)

    def _children_rss(self) -> int:
        total = 0
        for child in self._process.children(recursive=True):
            with suppress(psutil.Error):  # a child that exited meanwhile
                total += child.memory_info().rss
        return total
