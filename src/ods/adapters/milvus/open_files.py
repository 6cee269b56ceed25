"""Files opened once per process and reopened when they change: the dense and sparse snapshots."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

FileIdentity = tuple[int, int, int]


def file_identity(path: Path) -> FileIdentity | None:
    """(inode, size, mtime) of ``path``: a rewritten or replaced file has another; None when missing."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class OpenFileCache(Generic[T]):
    """Files of this process opened by ``opener`` (None: not a valid file), keyed by path and reopened when
    their identity (:func:`file_identity`) changes."""

    def __init__(self, opener: Callable[[Path], T | None]) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[FileIdentity, T]] = {}
        self._opener = opener

    def get(self, path: Path) -> T | None:
        identity = file_identity(path)
        if identity is None:
            self.forget(path)
            return None
        with self._lock:
            cached = self._open.get(path)
            if cached is not None and cached[0] == identity:
                return cached[1]
        opened = self._opener(path)
        with self._lock:
            if opened is None:
                self._open.pop(path, None)
            else:
                self._open[path] = (identity, opened)
        return opened

    def forget(self, path: Path) -> None:
        with self._lock:
            self._open.pop(path, None)
