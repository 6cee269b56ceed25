"""watch_bucket against the local store and the real S3 server; duplicates start one triggered run;
sync_knowledge_bases keeps going past a broken knowledge base."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from starlette.testclient import TestClient

from flows.ingest_documents import ingest_documents
from flows.prepare_dataset import prepare_dataset
from flows.sync_knowledge_bases import sync_knowledge_bases
from flows.watch_bucket import watch_bucket
from ods.adapters.object_store import ObjectStore
from ods.adapters.object_store.minio_store import MinioObjectStore
from ods.api.events_bridge import WEBHOOK_PATH, BridgeConfig, create_bridge_app
from ods.factories import build_object_store, open_catalog, open_index
from ods.settings import get_settings
from ods.stages.watch import (
    ObjectEvent,
    WatchResult,
    bucket_of,
    emit_object_events,
    emit_with_prefect,
    plan_bucket_changes,
    record_bucket_changes,
    uri_resolver,
    watch_layout,
)
from tests.support.minio_events import minio_body, minio_record
from tests.support.prefect_triggers import apply_triggered_deployment, triggered_parameter
from tests.support.prefect_yaml_triggers import firing_triggers, received_event, rendered_parameters


def _put_initial_objects(store: ObjectStore) -> None:
    store.put_bytes("raw/books.csv", b"id,title\n1,Dune\n")
    store.put_bytes("raw/books.yaml", b"name: books\n")
    store.put_bytes("docs/handbook/leave.md", b"# Leave\n\nTwenty days a year.\n")
    store.put_bytes("other/ignored.txt", b"not watched")


def _events(result: WatchResult) -> list[tuple[str, str]]:
    return [(event.event, event.key) for event in result.events]


def _use_s3(store: MinioObjectStore, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODS_OBJECT_STORE__KIND", "minio")
    monkeypatch.setenv("ODS_OBJECT_STORE__ENDPOINT", server.endpoint)
    monkeypatch.setenv("ODS_OBJECT_STORE__ACCESS_KEY", server.access_key)
    monkeypatch.setenv("ODS_OBJECT_STORE__SECRET_KEY", server.secret_key)
    monkeypatch.setenv("ODS_OBJECT_STORE__BUCKET", store.bucket)
    get_settings.cache_clear()


def _check_lifecycle(store: ObjectStore) -> None:
    _put_initial_objects(store)

    first = watch_bucket()
    second = watch_bucket()
    store.put_bytes("docs/handbook/leave.md", b"# Leave\n\nTwenty-five days a year.\n")
    store.delete("raw/books.csv")
    third = watch_bucket()
    fourth = watch_bucket()

    assert _events(first) == [
        ("ods.object.created", "docs/handbook/leave.md"),
        ("ods.object.created", "raw/books.csv"),
        ("ods.object.created", "raw/books.yaml"),
    ]
    assert first.recorded == 3
    assert second.model_dump(mode="json") == {"events": [], "recorded": 0}
    assert _events(third) == [
        ("ods.object.created", "docs/handbook/leave.md"),
        ("ods.object.deleted", "raw/books.csv"),
    ]
    assert third.events[0].id != first.events[0].id
    assert fourth.events == []
    with open_catalog(get_settings()) as catalog:
        seen = {record.key: record for record in catalog.watched_objects(bucket_of(store))}
    assert sorted(seen) == ["docs/handbook/leave.md", "raw/books.csv", "raw/books.yaml"]
    assert seen["raw/books.csv"].deleted and not seen["raw/books.yaml"].deleted


def test_watcher_emits_each_change_once_on_the_local_store() -> None:
    store = build_object_store(get_settings())
    store.ensure_ready()

    _check_lifecycle(store)


@pytest.mark.s3
def test_watcher_emits_each_change_once_on_the_s3_server(
    s3_server: Any, s3_store: MinioObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_s3(s3_store, s3_server, monkeypatch)

    _check_lifecycle(s3_store)


def test_a_watcher_killed_after_emitting_re_emits_the_same_ids() -> None:
    settings = get_settings()
    store = build_object_store(settings)
    store.ensure_ready()
    _put_initial_objects(store)
    emitted: list[ObjectEvent] = []
    with open_catalog(settings) as catalog:  # plan and emit, then "die" before recording
        changes = plan_bucket_changes(store, catalog, watch_layout(settings))
    emit_object_events(changes, uri_resolver(store), emitted.append)

    rerun = watch_bucket()

    assert [event.id for event in rerun.events] == [str(event.id) for event in emitted]
    assert watch_bucket().events == []


# --- duplicates through a real trigger ---------------------------------------------------------------


@flow(name="ingest-sink")
def ingest_sink(source: str, kb: str) -> None:
    """Stands in for ingest-documents: only its triggered runs are counted."""


@pytest.fixture(scope="module")
def sink_deployment() -> Iterator[uuid.UUID]:
    """A deployment with the same document trigger as ingest-documents in prefect.yaml."""
    trigger = DeploymentEventTrigger(
        expect={"ods.object.created", "ods.object.deleted"},
        match={"prefect.resource.id": "ods.object.*", "ods.object.kind": "document"},
        parameters={"source": "{{ event.payload.source_uri }}", "kb": "{{ event.payload.kb }}"},
    )
    probe = {
        "event": "ods.object.created",
        "resource": {
            "prefect.resource.id": "ods.object.probe/docs/probe/p.md",
            "ods.object.kind": "document",
        },
        "payload": {"source_uri": "probe", "kb": "probe"},
    }
    yield apply_triggered_deployment(ingest_sink, "sink", trigger, probe, "kb", "probe")


def test_duplicate_object_events_start_one_triggered_run(sink_deployment: uuid.UUID) -> None:
    settings = get_settings()
    store = build_object_store(settings)
    store.ensure_ready()
    # Content unique to this run: the test server outlives this test, and Prefect skips event ids it saw.
    store.put_bytes("docs/dupes/a.md", f"# A {uuid.uuid4()}\n".encode())
    with open_catalog(settings) as catalog:
        changes = plan_bucket_changes(store, catalog, watch_layout(settings))

    emit_object_events(changes, uri_resolver(store), emit_with_prefect)  # a watcher that died here
    watch_bucket()  # the next run emits the same event again
    webhook = minio_body(
        minio_record("s3:ObjectCreated:Put", "docs/dupes/a.md", etag=changes[0].etag, bucket="local")
    )
    bridge = TestClient(create_bridge_app(BridgeConfig(watch_layout(settings)), emit_with_prefect))
    assert bridge.post(WEBHOOK_PATH, content=webhook).status_code == 200  # and a late webhook, twice
    assert bridge.post(WEBHOOK_PATH, content=webhook).status_code == 200
    store.put_bytes("docs/sentinel/b.md", f"# B {uuid.uuid4()}\n".encode())
    watch_bucket()

    kbs = triggered_parameter(sink_deployment, "kb", until=("dupes", "sentinel"))
    assert sorted(kb for kb in kbs if kb != "probe") == ["dupes", "sentinel"]


# --- late and out-of-order events ---------------------------------------------------------------------


def _observe(store: ObjectStore) -> list[ObjectEvent]:
    """One watcher pass whose events are kept here instead of sent, to be delivered in any order."""
    settings = get_settings()
    events: list[ObjectEvent] = []
    with open_catalog(settings) as catalog:
        changes = plan_bucket_changes(store, catalog, watch_layout(settings))
        emit_object_events(changes, uri_resolver(store), events.append)
        record_bucket_changes(catalog, bucket_of(store), changes)
    return events


def _deliver(event: ObjectEvent) -> list[dict[str, Any]]:
    """Run here what prefect.yaml's triggers start for ``event``, with the parameters they render."""
    received = received_event(event.event, event.resource, event.payload)
    flows = {"prepare-dataset": prepare_dataset, "ingest-documents": ingest_documents}
    return [
        flows[name](**rendered_parameters(trigger, received))
        for name in flows
        for trigger in firing_triggers(name, received)
    ]


def test_late_and_out_of_order_events_never_roll_back_a_dataset_or_a_knowledge_base() -> None:
    """A triggered run syncs with what the bucket holds when it runs, not with the version its event
    names: a late event for an old version, or a deletion delivered before the creation it follows,
    leaves the newest state (and starts no duplicate version)."""
    store = build_object_store(get_settings())
    store.ensure_ready()
    store.put_bytes("raw/books.csv", b"id,title\n1,Dune\n")
    store.put_bytes("raw/books.yaml", b"name: books\nsource:\n  uri: books.csv\n")
    store.put_bytes("docs/late/refunds.md", b"# Refunds\n\nRefunds take 30 days.\n")
    first = _observe(store)
    store.put_bytes("raw/books.csv", b"id,title\n1,Dune\n2,Emma\n")
    store.put_bytes("docs/late/refunds.md", b"# Refunds\n\nRefunds take 14 days.\n")
    store.put_bytes("docs/late/vouchers.md", b"# Vouchers\n\nVouchers never expire.\n")
    second = _observe(store)
    store.delete("docs/late/vouchers.md")
    third = _observe(store)
    assert [len(events) for events in (first, second, third)] == [3, 3, 1]

    for event in [*third, *reversed(second), *reversed(first)]:  # newest first, the creations last
        _deliver(event)

    settings = get_settings()
    with open_catalog(settings) as catalog:
        versions = catalog.list_dataset_versions("books")
        documents = {document.uri.rsplit("/", 1)[-1]: document for document in catalog.documents("late")}
        index = open_index(settings, catalog.get_knowledge_base("late"))
        try:
            refunds = index.search(text="refunds days", mode="bm25", k=5)
            vouchers = index.search(text="vouchers expire", mode="bm25", k=5)
        finally:
            index.close()
    assert [(version.version, version.row_count, version.status) for version in versions] == [
        (1, 2, "registered")
    ]
    assert "vouchers.md" not in documents  # gone before any run read it: never indexed
    assert not [hit for hit in vouchers if "Vouchers" in hit.text]
    assert documents["refunds.md"].status == "indexed"
    assert refunds and all("14 days" in hit.text for hit in refunds)


# --- nightly knowledge base sync ---------------------------------------------------------------------


def test_sync_knowledge_bases_continues_past_a_broken_source(tmp_path: Path) -> None:
    good, broken = tmp_path / "good", tmp_path / "broken"
    good.mkdir()
    broken.mkdir()
    (good / "a.md").write_text("# Returns\n\nReturn any product within 30 days.\n")
    (broken / "b.md").write_text("# Shipping\n\nOrders ship in two days.\n")
    ingest_documents(str(good), "good_kb")
    ingest_documents(str(broken), "broken_kb")
    (good / "c.md").write_text("# Warranty\n\nTwo years on every gadget.\n")
    (broken / "b.md").unlink()
    broken.rmdir()

    state = sync_knowledge_bases(return_state=True)

    assert state.is_failed()
    assert "broken_kb" in (state.message or "") and "good_kb (" not in (state.message or "")
    with open_catalog(get_settings()) as catalog:
        documents = {d.uri.rsplit("/", 1)[-1]: d.status for d in catalog.documents("good_kb")}
    assert documents == {"a.md": "indexed", "c.md": "indexed"}
