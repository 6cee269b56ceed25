"""Streaming a stage's text as it writes it: the stage runs in a thread of its own, the response reads it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

T = TypeVar("T")

_FINISHED = object()


def run_streaming(
    run: Callable[[Callable[[str], None]], T], *, thread_name: str
) -> Iterator[str | T | Exception]:
    """The text pieces ``run`` passes to its callback as it writes them, then what it returns (or the
    exception it raised). ``run`` goes on in its thread to the end (a conversation turn is kept) even
    when the client leaves mid-stream and nobody reads on."""
    pieces: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        try:
            pieces.put(run(pieces.put))
        except Exception as error:  # noqa: BLE001 - handed to the reader, which reports it
            pieces.put(error)
        finally:
            pieces.put(_FINISHED)

    threading.Thread(target=work, name=thread_name, daemon=True).start()
    while (item := pieces.get()) is not _FINISHED:
        yield item


def event_stream(events: Iterator[str]) -> StreamingResponse:
    """Server-sent ``events`` as they come: no caching, no buffering by a proxy in front."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
