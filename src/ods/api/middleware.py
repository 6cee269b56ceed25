"""What every request goes through: its id, the body size limit, metrics, and the last-resort 500.

One plain ASGI middleware rather than several: it sits outside the routes, so an answer it makes itself
(413, 500) still carries the X-Request-ID header and is still counted.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ods.api.envelope import (
    REQUEST_ID_HEADER,
    bad_input_response,
    new_request_id,
    set_request_id,
    unexpected_error_response,
)
from ods.api.metrics import UNMATCHED, ApiMetrics

logger = logging.getLogger(__name__)
# A route's template as its label: /datasets/{name:path} counts as /datasets/{name}.
_CONVERTER = re.compile(r":\w+}")
# Document uploads (multipart) are limited by ODS_API__MAX_UPLOAD_BYTES rather than the body limit.
_UPLOAD_PATH = re.compile(r"/api/v1/knowledge-bases/[^/]+/documents/?")
UPLOAD_FRAMING_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """A request body passed the size limit while it was read."""


@dataclass
class _AnswerState:
    """What the answer to one request has sent so far: its status once started (500 until then: an
    exception before any answer becomes one)."""

    status: int = 500
    started: bool = False


class RequestContext:
    """Gives each HTTP request an id (echoed when the client sent a safe one), refuses bodies over
    ``max_body_bytes`` with 413 before the route parses them, times and counts the answer, and turns an
    exception no handler took into a 50001 answer that says nothing of it (it is logged)."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: ApiMetrics, max_upload_bytes: int = 0
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        request_id = new_request_id(headers.get(REQUEST_ID_HEADER.lower()))
        set_request_id(request_id)
        path: str = scope["path"]
        answer = _AnswerState()
        limit = self._limit_of(scope)
        scope.setdefault("state", {})["body_limit"] = limit  # for the error handler of a chunked body

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status, answer.started = message["status"], True
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            too_large = self._declared_too_large(headers.get("content-length"), limit)
            if too_large:
                response = body_too_large_response(path, limit)
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive, limit), send_with_id)
        except BodyTooLarge:
            if not answer.started:
                await body_too_large_response(path, limit)(scope, receive, send_with_id)
        except Exception:
            logger.exception("request %s %s %s failed", request_id, scope.get("method"), path)
            if not answer.started:
                await unexpected_error_response(path)(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            self.metrics.observe(scope.get("method", ""), route, answer.status, time.perf_counter() - started)
            if answer.status >= 400:
                self.metrics.count_error(route, answer.status)

    def _limit_of(self, scope: Scope) -> int:
        """The body limit of this request: an upload's is the upload limit plus room for the multipart
        framing (the route checks the file itself against the exact limit)."""
        if self.max_upload_bytes and scope.get("method") == "POST" and _UPLOAD_PATH.fullmatch(scope["path"]):
            return max(self.max_body_bytes, self.max_upload_bytes + UPLOAD_FRAMING_BYTES)
        return self.max_body_bytes

    def _declared_too_large(self, length: str | None, limit: int) -> bool:
        try:
            return length is not None and int(length) > limit
        except ValueError:
            return False

    def _limited(self, receive: Receive, limit: int) -> Receive:
        """``receive`` that raises :class:`BodyTooLarge` once the body read so far passes the limit (a
        chunked body declares no length up front)."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return limited


def body_too_large_response(path: str, limit: int) -> Response:
    """HTTP 413 with code 40001 and a message naming the limit and its setting."""
    upload = _UPLOAD_PATH.fullmatch(path) is not None
    setting, hint = (
        ("ODS_API__MAX_UPLOAD_BYTES", "upload a smaller document")
        if upload
        else ("ODS_API__MAX_BODY_BYTES", "send less, e.g. fewer texts per request")
    )
    response = bad_input_response(
        path,
        "body",
        f"request body larger than the limit of {limit:,} bytes ({setting}); {hint}",
        reason="too large",
    )
    response.status_code = 413
    return response
