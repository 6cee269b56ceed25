"""Requests for a deployed model passed to its OpenAI-compatible endpoint, streams chunk by chunk.

A model deployed with ``ods models deploy`` (or ``POST /api/v1/models/deploy``) is served by its own
``vllm serve`` or ``transformers serve`` process; the catalog names its model's active endpoint. The gateway
forwards the client's JSON body as it came (only ``model`` becomes the id the endpoint serves, so fields
ods does not know still reach vLLM) and answers with the endpoint's own answer: status, JSON, or its SSE
bytes as they arrive. What the endpoint does wrong is answered in OpenAI's error shape: its own 4xx errors
pass through, a 5xx becomes 502, and an endpoint that does not answer at all 503.

One :class:`EndpointProxy` per server process keeps one connection pool to every endpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from ods.adapters.catalog.records import EndpointRecord
from ods.api.envelope import ErrorKind, error_response
from ods.api.metrics import ApiMetrics

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 600.0
"""Seconds between two pieces of an answer (a long generation on a busy CPU server is slow, not dead)."""
UPSTREAM_DOWN = ErrorKind(50301, 503, "server_error", "model_unavailable")
UPSTREAM_FAILED = ErrorKind(50001, 502, "server_error", "upstream_error")
_PASSED_HEADERS = ("content-type", "cache-control")


class EndpointProxy:
    """Forwards requests to deployed models' endpoints over one shared ``httpx.Client``.

    ``transport`` lets a unit test answer without a socket.
    """

    def __init__(self, *, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
            headers={"Accept-Encoding": "identity"},  # the bytes pass through as they are
        )

    def forward(
        self, path: str, endpoint: EndpointRecord, body: dict[str, Any], metrics: ApiMetrics | None = None
    ) -> Response:
        """POST ``body`` to the endpoint's ``/v1/<route>`` (``route`` = the part of ``path`` after ``/v1/``)
        with ``model`` set to its served id; the endpoint's answer, or an OpenAI-shaped error. The ``usage``
        the endpoint reports (a stream's, when the client asked for it) is counted in ``metrics``."""
        served = endpoint.served_model or endpoint.model_name
        url = f"{endpoint.url.rstrip('/')}/{path.removeprefix('/v1/')}"
        request = self._client.build_request("POST", url, json={**body, "model": served})
        try:
            upstream = self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            return error_response(path, UPSTREAM_DOWN, _down_message(endpoint, error))
        if upstream.status_code >= 400:
            try:
                upstream.read()
            except httpx.HTTPError as error:
                return error_response(path, UPSTREAM_DOWN, _down_message(endpoint, error))
            finally:
                upstream.close()
            return _upstream_error(path, endpoint, upstream)
        headers = {name: upstream.headers[name] for name in _PASSED_HEADERS if name in upstream.headers}
        if "text/event-stream" in upstream.headers.get("content-type", ""):
            return StreamingResponse(
                _relay(upstream, endpoint, metrics),
                status_code=upstream.status_code,
                headers={**headers, "X-Accel-Buffering": "no"},
                background=BackgroundTask(upstream.close),
            )
        try:
            content = upstream.read()
        except httpx.HTTPError as error:
            return error_response(path, UPSTREAM_DOWN, _down_message(endpoint, error))
        finally:
            upstream.close()
        if metrics is not None:
            _count_usage(metrics, endpoint, content)
        return Response(content, status_code=upstream.status_code, headers=headers)

    def close(self) -> None:
        self._client.close()


def _relay(upstream: httpx.Response, endpoint: EndpointRecord, metrics: ApiMetrics | None) -> Iterator[bytes]:
    """The endpoint's SSE bytes as they arrive; one OpenAI-shaped error event if it breaks off."""
    partial = b""  # the start of a line the next piece ends
    try:
        for piece in upstream.iter_raw():
            yield piece
            if metrics is not None:
                *lines, partial = (partial + piece).split(b"\n")
                for line in lines:
                    if line.startswith(b"data: {") and b'"usage"' in line:
                        _count_usage(metrics, endpoint, line.removeprefix(b"data: "))
    except httpx.HTTPError as error:
        message = _down_message(endpoint, error) + " (the stream broke off)"
        logger.warning("%s", message)
        body = {"error": {"message": message, "type": "server_error", "code": "model_unavailable"}}
        yield f"data: {json.dumps(body)}\n\n".encode()
    finally:
        upstream.close()


def _count_usage(metrics: ApiMetrics, endpoint: EndpointRecord, content: bytes) -> None:
    """Count the tokens of an answer's (or a stream chunk's) ``usage``; anything else is left alone."""
    try:
        usage = json.loads(content).get("usage")
        if isinstance(usage, dict):
            metrics.count_tokens(
                endpoint.model_name,
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
            )
    except (ValueError, TypeError, AttributeError):
        return


def _down_message(endpoint: EndpointRecord, error: httpx.HTTPError) -> str:
    return (
        f"model {endpoint.model_name!r} is deployed at {endpoint.url} but its endpoint does not answer "
        f"({type(error).__name__}); GET /api/v1/models/{endpoint.model_name}/status checks it, and "
        f"POST /api/v1/models/deploy starts it again"
    )


def _upstream_error(path: str, endpoint: EndpointRecord, upstream: httpx.Response) -> JSONResponse:
    """The endpoint's own error: its 4xx as it sent it (when in OpenAI's shape), a 5xx as 502."""
    try:
        body = upstream.json()
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict) and upstream.status_code < 500:
        return JSONResponse({"error": detail}, status_code=upstream.status_code)
    if isinstance(detail, dict):
        said = str(detail.get("message", ""))
    elif isinstance(detail, str):
        said = detail
    else:
        said = " ".join(upstream.text.split())[:300]
    message = (
        f"the endpoint of model {endpoint.model_name!r} at {endpoint.url} answered {upstream.status_code}"
        f"{f': {said}' if said else ''}"
    )
    if upstream.status_code < 500:
        kind = ErrorKind(40001, upstream.status_code, "invalid_request_error")
        return error_response(path, kind, message)
    return error_response(path, UPSTREAM_FAILED, message)
