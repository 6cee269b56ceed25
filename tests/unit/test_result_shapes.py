"""The typed results flows return keep the JSON shape their callers and docs rely on, and survive
Prefect's JSON result serializer (a cached task result, a persisted one) as the same typed value."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from prefect.serializers import JSONSerializer
from pydantic import BaseModel

from ods.adapters.catalog.records import DatasetVersionRecord, EndpointRecord, ModelVersionRecord
from ods.domain.deploy_gate import GateResult
from ods.domain.scheduled_runs import ScheduledRun, leftover_skip_result
from ods.stages.health import CheckResult
from ods.stages.ingest import BatchReport, summarize_ingest
from ods.stages.prepare import PreparedVersion
from ods.stages.serve import StoppedEndpoints, activated_endpoint, endpoint_summary
from ods.stages.train import TrainingPlan, model_summary
from ods.stages.watch import (
    EmittedEvent,
    KnowledgeBaseSync,
    KnowledgeBaseSyncReport,
    WatchResult,
    sync_failure_message,
)

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _dataset_version(status: str = "registered") -> DatasetVersionRecord:
    return DatasetVersionRecord(
        id=7, dataset_id=1, dataset_name="sales", version=2, content_hash="c" * 64, uri="file:///s/d.parquet",
        schema={}, profile={}, row_count=980, size_bytes=12_345, status=status, reason=None, source_uri=None,
        source_etag=None, source_sha256=None, spec_hash=None, flow_run_id=None, parent_ids=(), created_at=NOW,
    )  # fmt: skip


def _endpoint(endpoint_id: int = 3) -> EndpointRecord:
    return EndpointRecord(
        id=endpoint_id, model_version_id=5, model_name="tiny", model_version=1, backend="transformers",
        url="http://127.0.0.1:8000/v1", status="active", log_tail=None, created_at=NOW, updated_at=NOW,
        pid=4242, log_path="/tmp/server.log", details={"ready_seconds": 2.5},
    )  # fmt: skip


def _ingest_summary() -> Any:
    first = BatchReport(
        indexed=2, reused=1, chunks=9, seconds={"read": 0.1, "parse": 0.2, "embed": 1.0, "index": 0.5}
    )
    second = BatchReport(
        indexed=1, chunks=3, quarantined=[{"uri": "file:///d/e.txt", "reason": "empty", "detail": "no text"}],
        seconds={"read": 0.1, "parse": 0.1, "embed": 0.5, "index": 0.25},
    )  # fmt: skip
    return summarize_ingest("policies", "/docs", 4, [first, second], deleted=1)


def test_a_prepared_versions_summary_has_the_documented_fields() -> None:
    summary = PreparedVersion(_dataset_version()).summary("file:///s/card.md")

    assert summary.model_dump(mode="json") == {
        "dataset": "sales", "version": 2, "version_id": 7, "status": "registered", "uri": "file:///s/d.parquet",
        "rows": 980, "size_bytes": 12_345, "content_hash": "c" * 64, "quarantine_uri": None,
        "quarantined_rows": None, "reason": None, "card_uri": "file:///s/card.md",
    }  # fmt: skip


def test_an_ingest_summary_adds_up_its_batches_and_its_event_leaves_out_the_documents() -> None:
    summary = _ingest_summary()

    assert summary.model_dump(mode="json") == {
        "kb": "policies", "source": "/docs", "indexed": 3, "chunks": 12, "unchanged": 5, "quarantined": 1,
        "deleted": 1, "seconds": {"read": 0.2, "parse": 0.3, "embed": 1.5, "index": 0.75},
        "quarantined_documents": [{"uri": "file:///d/e.txt", "reason": "empty", "detail": "no text"}],
    }  # fmt: skip
    assert summary.changed_anything
    assert "quarantined_documents" not in summary.event_payload()


def test_model_and_endpoint_summaries_have_the_documented_fields() -> None:
    record = ModelVersionRecord(
        id=11, model_id=2, model_name="sales", version=1, trainer="tabular", params={}, metrics={"f1": 0.9},
        artifact_uri="file:///m/", dataset_version_id=7, code_version="abc", flow_run_id="run-1",
        status="registered", created_at=NOW,
    )  # fmt: skip
    plan = TrainingPlan("sales", "tabular", "sales", 2, 7, "file:///d", "c" * 64, {}, "abc", "key1")

    assert model_summary(record, plan, reused=True).model_dump(mode="json") == {
        "model": "sales", "version": 1, "version_id": 11, "trainer": "tabular", "metrics": {"f1": 0.9},
        "artifact_uri": "file:///m/", "dataset": "sales@2", "dataset_version_id": 7, "code_version": "abc",
        "flow_run_id": "run-1", "training_key": "key1", "reused": True,
    }  # fmt: skip
    endpoint = {
        "endpoint_id": 3, "model": "tiny", "version": 1, "model_version_id": 5, "backend": "transformers",
        "url": "http://127.0.0.1:8000/v1", "served_model": "tiny", "status": "active", "pid": 4242,
        "log_path": "/tmp/server.log", "ready_seconds": 2.5, "reused": False,
    }  # fmt: skip
    assert endpoint_summary(_endpoint()).model_dump(mode="json") == endpoint
    assert activated_endpoint(_endpoint(), [_endpoint(1)]).model_dump(mode="json") == {
        **endpoint,
        "replaced": [1],
    }
    stopped = StoppedEndpoints(model="tiny", stopped=[endpoint_summary(_endpoint())], message="stopped 1")
    assert stopped.model_dump(mode="json") == {"model": "tiny", "stopped": [endpoint], "message": "stopped 1"}


def test_a_synced_knowledge_base_shows_its_ingest_inline_and_a_failed_one_its_error() -> None:
    synced = KnowledgeBaseSync(kb="policies", status="synced", ingest=_ingest_summary())
    failed = KnowledgeBaseSync(kb="broken", status="failed", error="source gone")
    report = KnowledgeBaseSyncReport(synced=2, knowledge_bases=[synced, failed])

    data = report.model_dump(mode="json")

    assert data["knowledge_bases"][0] == {
        "kb": "policies",
        "status": "synced",
        **_ingest_summary().model_dump(),
    }
    assert data["knowledge_bases"][1] == {"kb": "broken", "status": "failed", "error": "source gone"}
    assert sync_failure_message([synced]) is None
    assert (sync_failure_message(report.knowledge_bases) or "").startswith(
        "1 knowledge base(s) failed to sync: broken (source gone)"
    )


RESULTS: list[Any] = [
    PreparedVersion(_dataset_version()).summary("file:///s/card.md"),
    _ingest_summary(),
    activated_endpoint(_endpoint(), []),
    WatchResult(events=[EmittedEvent(event="ods.object.created", key="raw/a.csv", id=str(uuid.uuid4()))], recorded=1),
    KnowledgeBaseSyncReport(
        synced=1, knowledge_bases=[KnowledgeBaseSync(kb="policies", status="synced", ingest=_ingest_summary())]
    ),
    GateResult(model="llm", version=1, model_ref="llm@1", trainer="causal-lm-sft", approved=False, reasons=["no gate"]),
    leftover_skip_result(ScheduledRun(uuid.uuid4(), uuid.uuid4(), True, NOW, uuid.uuid4())),
    CheckResult("catalog", ok=True, detail="sqlite", seconds=0.01),
]  # fmt: skip


@pytest.mark.parametrize("result", RESULTS, ids=[type(result).__name__ for result in RESULTS])
def test_results_round_trip_through_prefects_json_serializer(result: Any) -> None:
    serializer = JSONSerializer()

    again = serializer.loads(serializer.dumps(result))

    assert again == result and type(again) is type(result)
    if isinstance(result, BaseModel):
        assert result.model_config.get("frozen") is True
