"""Reading the API's envelope in tests: the data of a success, the body of a refusal, a run once it ended."""

from __future__ import annotations

import time
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


def finished_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """Run ``run_id`` once it completed or failed, polled through the API (pytest-timeout stops a run
    that never ends)."""
    while True:
        run: dict[str, Any] = data(client.get(f"/api/v1/runs/{run_id}"))
        if run["state"] in ("completed", "failed"):
            return run
        time.sleep(0.1)
