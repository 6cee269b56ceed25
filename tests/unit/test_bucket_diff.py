"""The bucket diff, deterministic event ids, MinIO notification parsing and the deploy gate (pure logic)."""

from __future__ import annotations

import json

import pytest

from ods.api.events_bridge import NotificationError, parse_minio_notification
from ods.domain.bucket_diff import (
    ObjectChange,
    ObservedObject,
    SeenObject,
    WatchLayout,
    classify_key,
    diff_objects,
    object_event_id,
)
from ods.domain.deploy_gate import approval_event_id, evaluate_deploy_gate
from tests.support.minio_events import minio_body, minio_record

LAYOUT = WatchLayout(raw_prefix="raw/", documents_prefix="docs/")


def _seen(listed: list[ObservedObject]) -> dict[str, SeenObject]:
    return {o.key: SeenObject(o.key, o.etag, o.size, o.sha256) for o in listed}


LISTED = [
    ObservedObject("raw/books.csv", '"e1"', 100),
    ObservedObject("raw/books.yaml", "e2", 20),
    ObservedObject("docs/handbook/a.md", "e3", 30),
    ObservedObject("docs/handbook/sub/b.pdf", "e4", 40),
    ObservedObject("other/ignored.txt", "e5", 50),
    ObservedObject("docs/loose.md", "e6", 60),
    ObservedObject("raw/.hidden.csv", "e7", 70),
]


@pytest.mark.parametrize(
    ("key", "kind", "kb", "spec_key"),
    [
        ("raw/books.csv", "raw", None, "raw/books.yaml"),
        ("raw/2024/sales.parquet", "raw", None, "raw/2024/sales.yaml"),
        ("raw/books.yaml", "spec", None, None),
        ("raw/books.YML", "spec", None, None),
        ("docs/handbook/sub/b.pdf", "document", "handbook", None),
    ],
)
def test_classify_key_gives_each_watched_object_its_role(
    key: str, kind: str, kb: str | None, spec_key: str | None
) -> None:
    role = classify_key(key, LAYOUT)

    assert role is not None
    assert (role.kind, role.kb, role.spec_key) == (kind, kb, spec_key)


@pytest.mark.parametrize(
    "key", ["other/x.csv", "docs/loose.md", "docs/kb/", "raw/", "raw/.tmp.csv", "docs/kb/.x"]
)
def test_classify_key_ignores_objects_outside_the_layout(key: str) -> None:
    assert classify_key(key, LAYOUT) is None


def test_first_look_creates_every_watched_object_and_a_second_look_nothing() -> None:
    changes = diff_objects("lake", LISTED, {}, LAYOUT)

    assert [(c.action, c.key) for c in changes] == [
        ("created", "docs/handbook/a.md"),
        ("created", "docs/handbook/sub/b.pdf"),
        ("created", "raw/books.csv"),
        ("created", "raw/books.yaml"),
    ]
    assert changes[2].etag == "e1"  # quotes stripped
    assert diff_objects("lake", LISTED, _seen(LISTED), LAYOUT) == []


def test_changed_etag_is_created_again_and_a_missing_object_is_deleted() -> None:
    seen = _seen(LISTED)
    now = [o for o in LISTED if o.key != "docs/handbook/a.md"]
    now[0] = ObservedObject("raw/books.csv", "e1-changed", 101)

    changes = diff_objects("lake", now, seen, LAYOUT)

    assert [(c.action, c.key, c.etag) for c in changes] == [
        ("created", "raw/books.csv", "e1-changed"),
        ("deleted", "docs/handbook/a.md", "e3"),
    ]


def test_sha256_decides_over_etag_when_both_sides_know_it() -> None:
    seen = {"raw/t.csv": SeenObject("raw/t.csv", "multipart-2", 5, "abc")}

    same_bytes = diff_objects("lake", [ObservedObject("raw/t.csv", "other-etag", 5, "abc")], seen, LAYOUT)
    new_bytes = diff_objects("lake", [ObservedObject("raw/t.csv", "multipart-2", 5, "def")], seen, LAYOUT)

    assert same_bytes == []
    assert [c.action for c in new_bytes] == ["created"]


def test_deleted_object_is_not_deleted_twice_and_reappearing_is_created() -> None:
    seen = {"raw/t.csv": SeenObject("raw/t.csv", "e", 5, deleted=True)}

    assert diff_objects("lake", [], seen, LAYOUT) == []
    assert [c.action for c in diff_objects("lake", [ObservedObject("raw/t.csv", "e", 5)], seen, LAYOUT)] == [
        "created"
    ]


def test_event_ids_are_deterministic_per_object_version_and_action() -> None:
    first = object_event_id("lake", "raw/t.csv", '"e1"', "created")

    assert first == object_event_id("lake", "raw/t.csv", "e1", "created")
    distinct = {
        first,
        object_event_id("lake", "raw/t.csv", "e2", "created"),
        object_event_id("lake", "raw/t.csv", "e1", "deleted"),
        object_event_id("other", "raw/t.csv", "e1", "created"),
        object_event_id("lake", "raw/u.csv", "e1", "created"),
    }
    assert len(distinct) == 5


def test_event_resource_and_payload_carry_what_triggers_and_flows_need() -> None:
    raw, spec, document = (
        next(c for c in diff_objects("lake", LISTED, {}, LAYOUT) if c.key == key)
        for key in ("raw/books.csv", "raw/books.yaml", "docs/handbook/sub/b.pdf")
    )

    def uri(key: str) -> str:
        return f"s3://lake/{key}"

    assert raw.resource()["prefect.resource.id"] == "ods.object.lake/raw/books.csv"
    assert raw.payload(uri)["spec_uri"] == "s3://lake/raw/books.yaml"
    assert raw.payload(uri)["source_uri"] == "s3://lake/raw/books.csv"
    assert spec.payload(uri)["spec_uri"] == "s3://lake/raw/books.yaml"
    assert spec.payload(uri)["source_uri"] is None
    assert document.resource()["ods.kb"] == "handbook"
    assert document.payload(uri) == {
        "bucket": "lake",
        "key": "docs/handbook/sub/b.pdf",
        "etag": "e4",
        "size": 40,
        "kind": "document",
        "uri": "s3://lake/docs/handbook/sub/b.pdf",
        "kb": "handbook",
        "source_uri": "s3://lake/docs/handbook/",
        "spec_key": None,
        "spec_uri": None,
    }


# --- MinIO notifications -----------------------------------------------------------------------------


def test_minio_notification_with_url_encoded_key_and_several_records() -> None:
    body = minio_body(
        minio_record("s3:ObjectCreated:Put", "docs/hand+book/Leave%20Policy+%282024%29.pdf"),
        minio_record("s3:ObjectRemoved:Delete", "raw/books.csv", etag=None, size=None),
        minio_record("s3:ObjectAccessed:Get", "raw/books.csv"),
        minio_record("s3:ObjectCreated:CompleteMultipartUpload", "elsewhere/x.csv"),
    )

    changes = parse_minio_notification(body, LAYOUT)

    assert [(c.action, c.key, c.role.kind, c.role.kb) for c in changes] == [
        ("created", "docs/hand book/Leave Policy (2024).pdf", "document", "hand book"),
        ("deleted", "raw/books.csv", "raw", None),
    ]


def test_bridge_and_watcher_give_the_same_event_id_for_the_same_object_version() -> None:
    (from_webhook,) = parse_minio_notification(
        minio_body(minio_record("s3:ObjectCreated:Put", "raw/books.csv", etag="e1", size=100)), LAYOUT
    )
    (from_listing,) = [c for c in diff_objects("lake", LISTED, {}, LAYOUT) if c.key == "raw/books.csv"]

    assert isinstance(from_webhook, ObjectChange)
    assert from_webhook.event_id == from_listing.event_id
    assert from_webhook.resource() == from_listing.resource()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"EventName": "s3:ObjectCreated:Put"}',
        b'{"Records": {"eventName": "x"}}',
        b'{"Records": [42]}',
        b'{"Records": [{"s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/a.csv"}}}]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "lake"}}}]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "lake"}, '
        b'"object": {"key": "raw/a.csv", "size": "12"}}}]}',
    ],
)
def test_malformed_notifications_are_refused(body: bytes) -> None:
    with pytest.raises(NotificationError):
        parse_minio_notification(body, LAYOUT)


def test_one_bad_record_refuses_the_whole_notification() -> None:
    good = minio_record("s3:ObjectCreated:Put", "raw/books.csv")
    bad = {"eventName": "s3:ObjectCreated:Put"}

    with pytest.raises(NotificationError, match=r"Records\[1\]"):
        parse_minio_notification(json.dumps({"Records": [good, bad]}).encode(), LAYOUT)


# --- the deploy gate ---------------------------------------------------------------------------------


def test_deploy_gate_passes_within_bounds_and_explains_every_failure() -> None:
    metrics = {"eval_loss": 1.9, "perplexity": 6.7}

    assert evaluate_deploy_gate("m", "causal-lm-sft", metrics, {}, {"eval_loss": 2.5}).passed
    failed = evaluate_deploy_gate("m", "tabular", metrics, {"accuracy": 0.8}, {"eval_loss": 1.0})
    assert not failed.passed
    assert len(failed.reasons) == 3
    assert any("accuracy" in reason and "missing" in reason for reason in failed.reasons)
    assert any("eval_loss = 1.9 is above the maximum 1" in reason for reason in failed.reasons)


def test_model_without_a_gate_is_never_deployed_automatically() -> None:
    decision = evaluate_deploy_gate("m", "causal-lm-sft", {"eval_loss": 0.1}, None, None)

    assert not decision.passed
    assert "ODS_WATCH__DEPLOY_GATES" in decision.reasons[0]
    first = approval_event_id("bot", 1, "s3://models/models/bot/k1/")
    assert first == approval_event_id("bot", 1, "s3://models/models/bot/k1/")
    assert first != approval_event_id("bot", 2, "s3://models/models/bot/k2/")
    assert first != approval_event_id("bot", 1, "file:///other-home/objects/models/bot/k1/")


def test_watch_settings_normalise_prefixes_and_refuse_an_empty_one() -> None:
    from ods.errors import SettingsError
    from ods.settings import load_settings

    watch = load_settings(watch={"raw_prefix": "/landing/raw", "documents_prefix": "docs"}).watch

    assert (watch.raw_prefix, watch.documents_prefix) == ("landing/raw/", "docs/")
    with pytest.raises(SettingsError, match="ODS_WATCH__RAW_PREFIX"):
        load_settings(watch={"raw_prefix": "/"})
