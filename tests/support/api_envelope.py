"""Reading the API's envelope in tests: the data of a success, the body of a refusal."""

from __future__ import annotations

from typing import Any

import httpx


def data(response: httpx.Response, status: int = 200) -> Any:
    """The ``data`` of a successful answer with HTTP ``status``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == 0 and body["message"] == "success"
    return body["data"]


def refused(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The body of a refusal with HTTP ``status`` and the seed's ``code``; it carries no data."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["data"] is None
    return body
