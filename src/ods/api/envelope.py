"""The seed's response format and the one mapping from errors to its codes.

``/api/v1/*`` answers ``{"code": 0, "message": "success", "data": …, "request_id": …, "timestamp": …}``;
an error keeps the shape with the code of its kind and ``details`` (``{"field": …, "reason": …}``). The
OpenAI-compatible routes (``/v1/*``) answer errors in OpenAI's own shape instead, so its clients raise
their usual exceptions. Every ``OdsError`` a stage raises is mapped here and nowhere else.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from ods.adapters.milvus.client import VectorIndexUnavailable
from ods.adapters.models.embedder import EmbeddingError
from ods.adapters.models.llm import LLMError
from ods.domain.identity import AuthenticationRefused, PermissionRefused
from ods.domain.names import InvalidNameError
from ods.domain.sql_guard import SqlRejected
from ods.errors import CatalogError, NotFoundError, ObjectStoreError, OdsError, SettingsError

logger = logging.getLogger(__name__)

T = TypeVar("T")

OPENAI_PREFIX = "/v1/"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = ContextVar("ods_api_request_id", default="")
# An echoed id goes into logs and a header: short, printable, nothing a log viewer would interpret.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ConflictError(OdsError):
    """The request conflicts with the state of what it names (HTTP 409, code 40901)."""


class RateLimitedError(OdsError):
    """The caller sent more requests than its limit allows (HTTP 429, code 42901)."""


@dataclass(frozen=True)
class ErrorKind:
    """One code of the seed's specification with its HTTP status and OpenAI error type."""

    code: int
    status: int
    openai_type: str
    openai_code: str | None = None


BAD_INPUT = ErrorKind(40001, 400, "invalid_request_error")
UNAUTHENTICATED = ErrorKind(40101, 401, "invalid_request_error", "invalid_api_key")
FORBIDDEN = ErrorKind(40301, 403, "invalid_request_error", "permission_denied")
NOT_FOUND = ErrorKind(40401, 404, "invalid_request_error")
CONFLICT = ErrorKind(40901, 409, "invalid_request_error")
RATE_LIMITED = ErrorKind(42901, 429, "requests", "rate_limit_exceeded")
UNEXPECTED = ErrorKind(50001, 500, "server_error")
UNAVAILABLE = ErrorKind(50301, 503, "server_error")

# First match wins: subclasses before their bases. Anything else a stage raises is the caller's to fix.
_KINDS: tuple[tuple[type[OdsError], ErrorKind], ...] = (
    (AuthenticationRefused, UNAUTHENTICATED),
    (PermissionRefused, FORBIDDEN),
    (NotFoundError, NOT_FOUND),
    (ConflictError, CONFLICT),
    (RateLimitedError, RATE_LIMITED),
    (CatalogError, UNAVAILABLE),
    (ObjectStoreError, UNAVAILABLE),
    (VectorIndexUnavailable, UNAVAILABLE),
    (LLMError, UNAVAILABLE),  # a model that cannot load or answer is the server's problem
    (EmbeddingError, UNAVAILABLE),
    (SettingsError, UNAVAILABLE),
    (OdsError, BAD_INPUT),
)


# Errors that always concern one part of a request, named in ``details.field``.
_FIELDS: tuple[tuple[type[OdsError], str], ...] = ((SqlRejected, "body.sql"), (InvalidNameError, "path.name"))


def error_kind(error: OdsError) -> ErrorKind:
    """The code, status and OpenAI type of an ``OdsError``."""
    return next(kind for cls, kind in _KINDS if isinstance(error, cls))


class ErrorDetails(BaseModel):
    """Which part of the request was wrong, and why."""

    field: str | None = Field(default=None, description="The request field at fault (e.g. body.top_k).")
    reason: str = Field(description="Why it was refused.")


class Envelope(BaseModel, Generic[T]):
    """The seed's envelope around every ``/api/v1`` answer."""

    code: int = Field(default=0, description="0 on success, else the error code (40001, 40401, …).")
    message: str = Field(default="success", description="'success', or the error in one line.")
    data: T = Field(description="The answer.")
    request_id: str = Field(description="The X-Request-ID of this request (echoed or generated).")
    timestamp: str = Field(description="When the answer was made, ISO 8601 in UTC.")


class ErrorEnvelope(BaseModel):
    """The seed's envelope around an ``/api/v1`` error."""

    code: int = Field(
        description="40001 bad input, 40101 no valid API key or token, 40301 a role the caller lacks, 40401 "
        "not found, 40901 conflict, 42901 rate limited, 50001 unexpected, 50301 unavailable."
    )
    message: str = Field(description="What was wrong, in one line.")
    details: ErrorDetails | None = Field(default=None, description="The field at fault, when one is.")
    data: None = None
    request_id: str
    timestamp: str


def new_request_id(given: str | None) -> str:
    """``given`` when it is a safe id (1-128 of ``A-Za-z0-9._:-``), else a fresh one."""
    return given if given and _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def set_request_id(request_id: str) -> None:
    _REQUEST_ID.set(request_id)


def current_request_id() -> str:
    """The id of the request being served (set by the request middleware)."""
    return _REQUEST_ID.get()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ok(data: T) -> Envelope[T]:
    """``data`` in the success envelope of the current request."""
    return Envelope[T](data=data, request_id=current_request_id(), timestamp=now_iso())


def error_response(
    path: str, kind: ErrorKind, message: str, details: ErrorDetails | None = None
) -> JSONResponse:
    """The error in the shape the route's clients expect: OpenAI's under ``/v1/``, the envelope elsewhere."""
    request_id = current_request_id()
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    if path.startswith(OPENAI_PREFIX):
        code = (
            ("model_not_found" if message.startswith("model ") else "not_found")
            if kind is NOT_FOUND
            else kind.openai_code
        )
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": kind.openai_type,
                "param": details.field if details else None,
                "code": code,
            }
        }
    else:
        body = ErrorEnvelope(
            code=kind.code, message=message, details=details, request_id=request_id, timestamp=now_iso()
        ).model_dump(mode="json")
    return JSONResponse(body, status_code=kind.status, headers=headers)


def bad_input_response(path: str, field: str, message: str, reason: str | None = None) -> JSONResponse:
    """HTTP 400 (code 40001) naming the request field at fault; ``reason`` (the details' why) defaults to
    ``message``."""
    details = ErrorDetails(field=field, reason=message if reason is None else reason)
    return error_response(path, BAD_INPUT, message, details)


def ods_error_response(path: str, error: OdsError) -> JSONResponse:
    """An ``OdsError`` as its code and its one-line message (the same line the CLI prints)."""
    kind = error_kind(error)
    message = " ".join(str(error).split()) or type(error).__name__
    if kind.status >= 500:
        logger.warning("request %s: %s: %s", current_request_id(), type(error).__name__, message)
    field = next((name for cls, name in _FIELDS if isinstance(error, cls)), None)
    details = ErrorDetails(field=field, reason=message) if field else None
    return error_response(path, kind, message, details)


def unexpected_error_response(path: str) -> JSONResponse:
    """The answer to a failure nobody foresaw: the request id to quote, nothing of the failure itself
    (its traceback and any value in it are logged, never sent)."""
    request_id = current_request_id()
    return error_response(
        path,
        UNEXPECTED,
        f"unexpected server error (request {request_id}); the server log holds the details under this id",
    )
