"""The console's way to the API: each page calls the app's own ``/api/v1`` routes in process.

A page request is replayed to the routes with the caller's credentials (``Authorization``, ``X-Tenant-ID``;
for a browser signed in by the session cookie, its session's current access token) and client address,
so the routes authenticate, authorise, validate and answer exactly as they answer the same caller over
HTTP; the console holds no data access of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

_FORWARDED = ("authorization", "x-tenant-id")
_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Answer:
    """One call's outcome: ``data`` of the envelope when it succeeded, else ``error`` (the API's message)."""

    data: Any = None
    error: str | None = None
    status: int = 200

    @property
    def ok(self) -> bool:
        return self.error is None


class ConsoleApi:
    """Calls the app's routes as the page's caller; one per page request (``async with``)."""

    def __init__(self, request: Request) -> None:
        client = request.client
        address = (client.host, client.port) if client else ("127.0.0.1", 0)
        headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
        session_token = getattr(request.state, "access_token", None)  # signed in by the session cookie
        if session_token and "authorization" not in headers:
            headers["authorization"] = f"Bearer {session_token}"
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=request.app, client=address),
            base_url="http://console.internal",
            headers=headers,
            timeout=_TIMEOUT_S,
        )

    async def __aenter__(self) -> ConsoleApi:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    async def get(self, path: str, **params: Any) -> Answer:
        query = {name: value for name, value in params.items() if value not in (None, "")}
        return _answer(await self._client.get(path, params=query))

    async def post(self, path: str, body: dict[str, Any]) -> Answer:
        return _answer(await self._client.post(path, json=body))


def _answer(response: httpx.Response) -> Answer:
    try:
        payload = response.json()
    except ValueError:
        return Answer(error=f"HTTP {response.status_code}", status=response.status_code)
    if not isinstance(payload, dict):
        return Answer(data=payload, status=response.status_code)
    data = payload.get("data", payload)
    if response.status_code >= 400:  # /readyz answers 503 with each check: kept for the page
        message = str(
            payload.get("message") or f"HTTP {response.status_code} ({payload.get('status', 'error')})"
        )
        return Answer(data=data, error=message, status=response.status_code)
    return Answer(data=data, status=response.status_code)
