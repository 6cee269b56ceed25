"""The audit log's rules that need no server: what a row says of a question, a route and an outcome, and
that a catalog failing to take rows costs a logged, counted failure, never the request's answer."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ods.adapters.catalog.audit import AuditEntryRecord, AuditFilter
from ods.api.audit import AuditTrail, AuditWriter, fill_template, outcome_of, question_detail
from ods.errors import CatalogError
from ods.settings import AuditSettings


class RefusingCatalog:
    """A catalog whose audit table is down (injected: the writer's failure path)."""

    def __init__(self) -> None:
        self.calls = 0

    def append_audit_entries(self, entries: Sequence[AuditEntryRecord]) -> int:
        self.calls += 1
        raise CatalogError("catalog unreachable")

    def list_audit_entries(
        self, where: AuditFilter, *, limit: int = 50, offset: int = 0
    ) -> list[AuditEntryRecord]:
        return []

    def prune_audit_entries(self, before: datetime) -> int:
        return 0


def test_a_question_is_hashed_unless_kept() -> None:
    question = "What did  Alice\nearn?"
    assert question_detail(question, keep=False) == (
        "question sha256:" + hashlib.sha256(question.encode()).hexdigest()
    )
    assert question_detail(question, keep=True) == "question: What did Alice earn?"


def test_a_resource_is_its_template_filled_in_but_never_a_token() -> None:
    assert fill_template("/api/v1/datasets/{name}", {"name": "sales"}) == "/api/v1/datasets/sales"
    assert fill_template("/api/v1/datasets/{name:path}", {"name": "a/b"}) == "/api/v1/datasets/a/b"
    assert fill_template("/api/v1/downloads/{token}", {"token": "secret"}) == "/api/v1/downloads/{token}"
    assert fill_template("/x/{name}", {"name": "\x1b[31m"}) == "/x/\\x1b[31m"


def test_outcomes() -> None:
    assert [outcome_of(status) for status in (200, 201, 302, 401, 403, 429, 400, 404, 500)] == [
        "allowed", "allowed", "allowed", "refused", "refused", "refused", "failed", "failed", "failed",
    ]  # fmt: skip


def test_a_failing_audit_write_is_logged_and_counted_and_the_request_still_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"made": True}, status_code=201)

    catalog = RefusingCatalog()
    registry = CollectorRegistry()
    writer = AuditWriter(lambda: catalog, registry)
    app = Starlette(routes=[Route("/api/v1/things", create, methods=["POST"])])
    audited = AuditTrail(app, writer=writer, settings=AuditSettings(), routes=lambda: app.routes)
    caplog.set_level(logging.ERROR, logger="ods.api.audit")
    with TestClient(audited) as client:
        answers = [client.post("/api/v1/things").status_code for _ in range(3)]
    writer.flush()
    writer.close()
    assert answers == [201, 201, 201]
    assert catalog.calls >= 1
    assert registry.get_sample_value("ods_audit_write_failures_total") == 3
    assert "audit: " in caplog.text and "not written (CatalogError: catalog unreachable)" in caplog.text
