"""What every adapter holding a resource (connections, a worker process, an open file) shares: ``with``.

``with adapter:`` returns the adapter itself and calls its ``close()`` on the way out, however the block
ends; a subclass defines only ``close()``.
"""

from __future__ import annotations

from typing import Self


class Closeable:
    """An adapter used as a context manager that closes it on exit."""

    def close(self) -> None:
        """Release what the adapter holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
