"""Give memory that a long-running process has freed back to the operating system.

glibc's allocator keeps freed blocks in its arenas for reuse and returns them to the system only now and
then; in a process that allocates and frees a batch's worth of text, vectors and protocol buffers over
and over (from several threads, so several arenas), the resident size then creeps up with the number of
batches although the live data does not. ``malloc_trim`` hands the free pages back. Elsewhere (musl,
macOS, Windows) there is no such call and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; whether this platform's allocator could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
