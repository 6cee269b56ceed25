"""Length-prefixed pickle frames over the pipes of a worker process we started ourselves.

The platform runs some work in plain ``python -c`` worker processes (document parsing, Great Expectations
validation) rather than multiprocessing children: spawn and forkserver re-import the parent's ``__main__``
(a flow file importing Prefect, torch, ...) in every child. Parent and worker talk through the worker's
stdin and stdout with these frames; the worker points its own stdout at stderr first, so a library that
prints cannot corrupt the reply stream.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

_FRAME = struct.Struct(">Q")


def spawn_worker(command: str) -> subprocess.Popen[bytes]:
    """Start ``python -c command`` with pipes, able to import what this process imports."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path or str(Path.cwd()) for path in sys.path))
    return subprocess.Popen(
        [sys.executable, "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )


def kill_worker(worker: subprocess.Popen[bytes]) -> None:
    """Kill ``worker`` if it still runs, reap it and close our ends of its pipes."""
    if worker.poll() is None:
        worker.kill()
        worker.wait()
    for pipe in (worker.stdin, worker.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def stdin_of(worker: subprocess.Popen[bytes]) -> IO[bytes]:
    assert worker.stdin is not None
    return worker.stdin


def stdout_of(worker: subprocess.Popen[bytes]) -> IO[bytes]:
    assert worker.stdout is not None
    return worker.stdout


def reply_streams() -> tuple[IO[bytes], IO[bytes]]:
    """The worker side: (requests, replies) streams; stdout is redirected to stderr from here on."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return requests, replies


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)))
    stream.write(payload)  # apart from the header: a document's bytes are not copied to be sent
    stream.flush()


def write_object(stream: IO[bytes], value: Any) -> None:
    write_frame(stream, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def read_frame(stream: IO[bytes], deadline: float | None = None) -> bytes | None:
    """One length-prefixed frame; None at end of stream; ``TimeoutError`` past ``deadline``."""
    fd = stream.fileno()
    header = _read_exactly(fd, _FRAME.size, deadline)
    if header is None:
        return None
    return _read_exactly(fd, _FRAME.unpack(header)[0], deadline)


def unpickle(frame: bytes) -> Any:
    # Frames come only from our own worker process or its parent, never from outside data.
    return pickle.loads(frame)  # noqa: S301


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
