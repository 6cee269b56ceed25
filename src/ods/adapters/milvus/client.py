"""Milvus connections: opening a client (a Lite file or a server), our errors, and the retry loop.

Every call the vector index makes goes through :func:`retry_transient`: transient faults (a restarting or
unreachable server, :func:`is_transient_milvus_error`) are retried with backoff, then reported once as
:class:`VectorIndexUnavailable` naming the URI; a refused request is a plain :class:`VectorIndexError`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ods.errors import OdsError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

logger = logging.getLogger(__name__)
T = TypeVar("T")


class VectorIndexError(OdsError):
    """Milvus cannot be reached or refused an operation."""


class VectorIndexUnavailable(VectorIndexError):
    """Milvus could not be reached or was not ready (a transient fault), still so after the retries.

    Raised instead of :class:`VectorIndexError` for connection refused/reset, an unavailable or not-ready
    server and timeouts, so a task may retry it later; a refused request (schema, dimension, filter) is a
    plain ``VectorIndexError`` and retrying it cannot help.
    """

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause or message


class CollectionReleased(VectorIndexUnavailable):
    """The collection is not loaded: after a restart, Milvus Lite holds every collection released."""


RELEASED_MESSAGE = re.compile(r"in state 'released'|collection not loaded|call load\(\)", re.IGNORECASE)

# Words of a pymilvus/gRPC error that mean the server was away, not that the request was wrong.
_TRANSIENT_MESSAGES = (
    "fail connecting to server",
    "server unavailable",
    "unavailable",
    "connection refused",
    "connection reset",
    "connection closed",
    "socket closed",
    "broken pipe",
    "deadline exceeded",
    "deadline_exceeded",
    "timed out",
    "timeout",
    "not ready",
    "notreadyserve",
    "service not ready",
    "server is stopping",
)


def is_transient_milvus_error(error: BaseException) -> bool:
    """Whether ``error`` from pymilvus means Milvus was away or busy (retry) rather than that the request
    was refused (do not): connection refused/reset, an unavailable, stopping or not-ready server, timeouts,
    rate limits. Input errors that the server flagged as such are never transient."""
    import grpc
    from pymilvus.exceptions import (
        ConnectError,
        ErrorCode,
        MilvusException,
        MilvusUnavailableException,
        ParamError,
    )
    from pymilvus.grpc_gen import common_pb2

    if isinstance(error, ConnectionError | TimeoutError):
        return True
    transient_codes = {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
    if isinstance(error, grpc.RpcError):
        code = error.code() if callable(getattr(error, "code", None)) else None
        return code in transient_codes
    if not isinstance(error, MilvusException) or isinstance(error, ParamError) or error.is_input_error:
        return False
    if isinstance(error, ConnectError | MilvusUnavailableException) or error.retriable:
        return True
    if error.code in transient_codes or error.code == ErrorCode.RATE_LIMIT:
        return True
    if error.compatible_code in (
        common_pb2.NotReadyServe,
        common_pb2.NotReadyCoordActivating,
        common_pb2.RateLimit,
    ):
        return True
    message = str(error.message).lower()
    return any(words in message for words in _TRANSIENT_MESSAGES)


def is_server_uri(uri: str) -> bool:
    """Whether ``uri`` names a Milvus server rather than a Milvus Lite file."""
    return uri.startswith(("http://", "https://", "tcp://", "unix:"))


def open_milvus_client(
    uri: str,
    *,
    token: str | None = None,
    timeout_s: float = 10.0,
    separate_process: bool = False,
    shared: bool = False,
) -> MilvusClient:
    """Connect to Milvus; a Lite file's parent directory is created first.

    A Lite file is served by this process's Milvus Lite server for it, started on first use: the file's
    shared server when one runs or ``shared`` asks for it, else in a process of its own when
    ``separate_process``, else in this process (see ``ods.adapters.milvus.lite_server``).
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    from ods.adapters.milvus.lite_server import MilvusLiteProcessError, lite_server_uri

    # pymilvus logs every failed call with its traceback (and each failed reconnect) before raising it;
    # this adapter retries transient faults and raises one error naming the URI, so those logs are noise.
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    logging.getLogger("pymilvus.client.connection_manager").setLevel(logging.ERROR)
    address = uri
    if not is_server_uri(uri):
        # Milvus Lite's in-process gRPC server logs a traceback for each call it does not implement
        # (pymilvus asks it for timestamps on every write); the calls succeed, the noise would not.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        # Milvus Lite has no MVCC timestamps; the iterator falls back to the client's clock and says so.
        logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
        if not uri.endswith(".db"):
            raise VectorIndexError(f"Milvus Lite file {uri!r} must end in '.db'; set ODS_MILVUS__URI")
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            address = lite_server_uri(uri, separate_process=separate_process, shared=shared)
        except MilvusLiteProcessError as error:
            raise VectorIndexError(str(error)) from None
    try:
        # Lite clients get their own gRPC connection, closed with the client: pymilvus keeps shared
        # connections after their last client closes and, once idle for 30 s, "recovers" them by
        # reconnecting, which was seen to fail against Milvus Lite's in-thread server ("Fail connecting
        # to server") when a long model call sat between two searches of one process.
        return MilvusClient(
            uri=address, token=token or "", timeout=timeout_s, dedicated=not is_server_uri(uri)
        )
    except MilvusException as error:
        kind = VectorIndexUnavailable if is_transient_milvus_error(error) else VectorIndexError
        raise kind(
            f"cannot open Milvus at {uri}: {error.message}; check ODS_MILVUS__URI and that Milvus is running"
        ) from None


def retry_transient(
    action: str,
    operation: Callable[[], T],
    *,
    collection: str,
    uri: str | None,
    retry_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    reload: Callable[[], None] | None = None,
) -> T:
    """``operation()``, retried with backoff (0.5 s doubling to 2 s) while Milvus fails transiently,
    for up to ``retry_s`` seconds; then one :class:`VectorIndexUnavailable` naming the URI.

    Only idempotent operations come here (see ``MilvusVectorIndex``), so a call that reached Milvus
    before the connection dropped is harmless to repeat. A collection found released (a restarted
    Milvus Lite server loads nothing by itself) is loaded again by ``reload()`` before the next attempt.
    """
    started = clock()
    delay = 0.5
    attempt = 1
    released = False
    while True:
        try:
            with milvus_errors(action, collection):
                if released and reload is not None:
                    reload()
                    released = False
                return operation()
        except VectorIndexUnavailable as error:
            released = released or isinstance(error, CollectionReleased)
            elapsed = clock() - started
            if elapsed + delay > retry_s:
                where = uri or "the configured URI"
                raise VectorIndexUnavailable(
                    f"Milvus at {where} is unavailable: could not {action} collection "
                    f"{collection!r} in {attempt} attempt(s) over {elapsed:.1f} s ({error.cause}); "
                    f"check that Milvus is running and reachable at {where} (ODS_MILVUS__URI) and run "
                    "again (writes are idempotent: what was written stays, nothing is written twice)"
                ) from None
            logger.warning(
                "Milvus at %s unavailable (%s); trying again in %.1f s to %s collection %s (attempt %d)",
                uri or "?",
                error.cause,
                delay,
                action,
                collection,
                attempt + 1,
            )
            sleep(delay)
            delay = min(delay * 2, 2.0)
            attempt += 1


@contextmanager
def milvus_errors(action: str, collection: str) -> Iterator[None]:
    """Turn pymilvus's errors into ours: transient faults into :class:`VectorIndexUnavailable`."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except VectorIndexError:
        raise
    except Exception as error:
        if is_transient_milvus_error(error):
            cause = first_line(
                error.message if isinstance(error, MilvusException) else f"{type(error).__name__}: {error}"
            )
            raise VectorIndexUnavailable(
                f"Milvus could not {action} collection {collection!r}: {cause}", cause=cause
            ) from None
        if isinstance(error, MilvusException) and RELEASED_MESSAGE.search(str(error.message)):
            cause = first_line(error.message)
            raise CollectionReleased(
                f"Milvus could not {action} collection {collection!r}: {cause}", cause=cause
            ) from None
        if isinstance(error, MilvusException):
            raise VectorIndexError(
                f"Milvus could not {action} collection {collection!r}: {error.message}"
            ) from None
        raise


def first_line(text: object, limit: int = 300) -> str:
    """The first line of an error's text, at most ``limit`` characters (gRPC appends long debug strings)."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
