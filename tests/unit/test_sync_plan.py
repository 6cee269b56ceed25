"""Planning an incremental ingest: skip by hint, read changed, delete vanished."""

from __future__ import annotations

import pytest

from ods.domain.sync_plan import KnownDocument, ListedDocument, needs_indexing, pipeline_batches, plan_sync


def test_new_changed_unchanged_and_removed_documents_are_told_apart() -> None:
    listed = [
        ListedDocument("s3://b/docs/new.md", "e1", 10),
        ListedDocument("s3://b/docs/same.md", "e2", 10),
        ListedDocument("s3://b/docs/changed.md", "e3-new", 10),
    ]
    known = [
        KnownDocument("s3://b/docs/same.md", "sha-same", "e2", "indexed"),
        KnownDocument("s3://b/docs/changed.md", "sha-old", "e3-old", "indexed"),
        KnownDocument("s3://b/docs/gone.md", "sha-gone", "e4", "indexed"),
        KnownDocument("s3://b/docs/long-gone.md", "sha", "e5", "deleted"),
    ]

    plan = plan_sync(listed, known)

    assert [document.uri for document in plan.to_read] == ["s3://b/docs/changed.md", "s3://b/docs/new.md"]
    assert plan.unchanged == ["s3://b/docs/same.md"]
    assert plan.to_delete == ["s3://b/docs/gone.md"]


def test_a_document_that_comes_back_after_deletion_is_read_again() -> None:
    plan = plan_sync([ListedDocument("f.txt", "e", 1)], [KnownDocument("f.txt", "sha", "e", "deleted")])

    assert [document.uri for document in plan.to_read] == ["f.txt"]


def test_quarantined_documents_with_the_same_hint_are_not_retried_every_run() -> None:
    plan = plan_sync(
        [ListedDocument("bad.pdf", "e", 1)], [KnownDocument("bad.pdf", "sha", "e", "quarantined")]
    )

    assert plan.unchanged == ["bad.pdf"]


def test_duplicate_listing_entries_are_planned_once() -> None:
    plan = plan_sync([ListedDocument("a", "e", 1), ListedDocument("a", "e", 1)], [])

    assert len(plan.to_read) == 1


def test_touched_but_identical_content_needs_no_indexing() -> None:
    known = KnownDocument("a", "sha1", "old-etag", "indexed")

    assert not needs_indexing(known, "sha1")
    assert needs_indexing(known, "sha2")
    assert needs_indexing(None, "sha1")
    assert needs_indexing(KnownDocument("a", "sha1", "e", "deleted"), "sha1")


def test_pipeline_batches_are_small_at_both_ends_and_keep_every_item_in_order() -> None:
    items = list(range(600))
    batches = pipeline_batches(items, 128)
    assert [len(batch) for batch in batches] == [16, 128, 128, 128, 128, 56, 16]
    assert [item for batch in batches for item in batch] == items


@pytest.mark.parametrize(("count", "size"), [(0, 4), (1, 1), (2, 1), (3, 1), (5, 8), (17, 8), (300, 128)])
def test_pipeline_batches_never_exceed_the_size_nor_lose_an_item(count: int, size: int) -> None:
    items = list(range(count))
    batches = pipeline_batches(items, size)
    assert [item for batch in batches for item in batch] == items
    assert all(1 <= len(batch) <= size for batch in batches)


def test_pipeline_batches_refuse_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pipeline_batches([1, 2], 0)
