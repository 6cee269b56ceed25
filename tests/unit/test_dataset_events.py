"""The ods.dataset.registered|rejected event of a version has a deterministic id: two prepare runs that
end on the same version (a raw table and its spec arriving together start two) emit one event, which
Prefect delivers once, so train-model starts once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ods.adapters.catalog.records import DatasetVersionRecord
from ods.stages.prepare import PreparedVersion

RECORD = DatasetVersionRecord(
    id=1,
    dataset_id=1,
    dataset_name="sales",
    version=1,
    content_hash="ab" * 32,
    uri="s3://lake/datasets/sales/" + "ab" * 32 + ".parquet",
    schema={},
    profile={},
    row_count=10,
    size_bytes=100,
    status="registered",
    reason=None,
    source_uri="s3://lake/raw/sales.csv",
    source_etag=None,
    source_sha256=None,
    spec_hash=None,
    flow_run_id="run-a",
    parent_ids=(),
    created_at=datetime(2026, 11, 30, tzinfo=UTC),
)


def test_runs_ending_on_the_same_version_give_the_same_event_id() -> None:
    first = PreparedVersion(RECORD).event_id("ods.dataset.registered")
    second = PreparedVersion(replace(RECORD, id=7, flow_run_id="run-b")).event_id("ods.dataset.registered")

    assert first == second


def test_another_version_store_or_event_gives_another_id() -> None:
    base = PreparedVersion(RECORD).event_id("ods.dataset.registered")
    others = {
        PreparedVersion(replace(RECORD, version=2)).event_id("ods.dataset.registered"),
        PreparedVersion(replace(RECORD, uri=RECORD.uri.replace("lake", "other"))).event_id(
            "ods.dataset.registered"
        ),
        PreparedVersion(RECORD).event_id("ods.dataset.rejected"),
    }

    assert base not in others
    assert len(others) == 3
