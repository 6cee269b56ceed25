"""Worker processes we start ourselves, and the length-prefixed pickle frames over their pipes.

The platform runs some work in plain ``python -c`` worker processes (document parsing, Great Expectations
validation, DuckDB queries, a Milvus Lite server) rather than multiprocessing children: spawn and
forkserver re-import the parent's ``__main__`` (a flow file importing Prefect, torch, ...) in every child.
Parent and worker talk through the worker's stdin and stdout with these frames; the worker points its own
stdout at stderr first, so a library that prints cannot corrupt the reply stream.

:class:`WorkerProcess` is the parent's side (start, the start-up handshake, requests and replies, the
end); :class:`ParentLink` is the worker's. Every worker answers its first reply when it has started:
:data:`READY` (or a tuple starting with ``"ready"``), else its own account of why it could not.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

_FRAME = struct.Struct(">Q")

READY = ("ready",)
"""The first reply of a worker that started and waits for requests."""


class WorkerProcess:
    """A ``python -c command`` worker, started at once, able to import what this process imports.

    Requests go to its stdin and replies come from its stdout, one frame each. Its first reply says
    whether it started (:meth:`start_reply`); it exits at the end of its input (:meth:`stop`).
    """

    def __init__(self, command: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path or str(Path.cwd()) for path in sys.path))
        self.process = subprocess.Popen(
            [sys.executable, "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._start_reply: Any = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def send(self, value: Any) -> None:
        """Send ``value`` pickled as one frame; ``OSError`` when the worker is gone."""
        self.send_frames(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def send_frames(self, *payloads: bytes) -> None:
        """Send each payload as a frame of its own, as it is (a document's bytes are not copied)."""
        stream = self._stdin()
        for payload in payloads:
            _write_frame(stream, payload)

    def receive(self, timeout_s: float | None = None) -> Any:
        """The next reply; None once the worker's output ended; ``TimeoutError`` past ``timeout_s``."""
        assert self.process.stdout is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        frame = _read_frame(self.process.stdout, deadline)
        return None if frame is None else _unpickle(frame)

    def start_reply(self, timeout_s: float) -> Any:
        """The worker's first reply, waited for up to ``timeout_s`` the first time and kept: :data:`READY`
        (or a tuple starting with ``"ready"``) when it started, else its account of why not; None when it
        ended or did not answer in time."""
        if self._start_reply is None:
            with contextlib.suppress(TimeoutError):
                self._start_reply = self.receive(timeout_s)
        return self._start_reply

    def stop(self, grace_s: float = 0.0) -> None:
        """Close its input (a worker exits at the end of its input), give it ``grace_s`` seconds to exit,
        then kill it if it still runs, reap it and close our ends of its pipes."""
        with contextlib.suppress(OSError):
            self._stdin().close()
        if grace_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        self.kill()

    def kill(self) -> None:
        """Kill the worker if it still runs, reap it and close our ends of its pipes."""
        worker = self.process
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pipe in (worker.stdin, worker.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def exit_description(self) -> str:
        """How the worker ended, for messages: ``was killed by SIGKILL``, ``exited with 1``. Waits for it."""
        code = self.process.wait()
        return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"

    def _stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin


class ParentLink:
    """The worker's side: requests from the parent on stdin, replies to it on stdout. Stdout is redirected
    to stderr from here on, so nothing else the worker prints reaches the parent as a reply."""

    def __init__(self) -> None:
        self.requests = os.fdopen(os.dup(0), "rb")
        self._replies = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)

    def receive(self) -> Any:
        """The next request; None at the end of the parent's input."""
        frame = self.receive_frame()
        return None if frame is None else _unpickle(frame)

    def receive_frame(self) -> bytes | None:
        """The next frame as it was sent; None at the end of the parent's input."""
        return _read_frame(self.requests)

    def send(self, value: Any) -> None:
        """Reply ``value``, pickled as one frame."""
        _write_frame(self._replies, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _unpickle(frame: bytes) -> Any:
    # Frames come only from our own worker process or its parent, never from outside data.
    return pickle.loads(frame)  # noqa: S301


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)))
    stream.write(payload)  # apart from the header: a document's bytes are not copied to be sent
    stream.flush()


def _read_frame(stream: IO[bytes], deadline: float | None = None) -> bytes | None:
    """One length-prefixed frame; None at end of stream; ``TimeoutError`` past ``deadline``."""
    fd = stream.fileno()
    header = _read_exactly(fd, _FRAME.size, deadline)
    if header is None:
        return None
    return _read_exactly(fd, _FRAME.unpack(header)[0], deadline)


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while remaining:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(timeout=left):
                    raise TimeoutError
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks)
