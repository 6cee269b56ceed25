"""Dense snapshots: exact ranking, filters, atomic files and the Milvus Lite fingerprint (no Milvus here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ods.adapters.milvus.dense_snapshot import (
    DenseSnapshot,
    SnapshotBuilder,
    lite_fingerprint,
    snapshot_path,
)
from ods.adapters.milvus.open_files import OpenFileCache

DIMENSION = 8


def make_rows(count: int, seed: int = 3) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32) * rng.uniform(0.5, 3, size=(count, 1))
    return [
        {
            "id": f"chunk-{number:03d}",
            "kb": "kb",
            "doc_uri": f"file:///doc-{number % 4}.md",
            "doc_sha256": "a" * 64,
            "chunk_index": number,
            "text": f"text {number}",
            "page": None if number % 5 == 0 else number % 3,
            "heading": None,
            "metadata": {"n": number},
            "dense": vectors[number].tolist(),
        }
        for number in range(count)
    ]


def write_snapshot(
    tmp_path: Path, rows: list[dict[str, object]], *, batch: int = 7, rows_per_block: int = 8_192
) -> DenseSnapshot:
    path = snapshot_path(tmp_path / "milvus.db", "coll")
    with SnapshotBuilder(
        path, DIMENSION, fingerprint="fp-1", model_id="model", rows_per_block=rows_per_block
    ) as builder:
        for start in range(0, len(rows), batch):
            builder.add(rows[start : start + batch])
        assert builder.commit() == len(rows)
    snapshot = DenseSnapshot.open(path)
    assert snapshot is not None
    return snapshot


def exact_top(rows: list[dict[str, object]], query: np.ndarray, k: int) -> list[str]:
    matrix = np.asarray([row["dense"] for row in rows], dtype=np.float64)
    cosine = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    return [str(rows[index]["id"]) for index in np.argsort(-cosine)[:k]]


def test_search_returns_the_exact_cosine_top_k_best_first(tmp_path: Path) -> None:
    rows = make_rows(50)
    snapshot = write_snapshot(tmp_path, rows)
    query = np.random.default_rng(9).normal(size=DIMENSION).astype(np.float32)

    hits = snapshot.search(query, 10)

    assert [row["id"] for row, _ in hits] == exact_top(rows, query, 10)
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0
    assert hits[0][0]["metadata"] == json.dumps({"n": int(str(hits[0][0]["id"])[-3:])})
    assert snapshot.path.name == "coll.arrow" and snapshot.path.parent.name == "milvus.db.ods-dense"
    assert (snapshot.fingerprint, snapshot.model_id) == ("fp-1", "model")


def test_conditions_filter_before_ranking_and_nulls_never_match(tmp_path: Path) -> None:
    rows = make_rows(40)
    snapshot = write_snapshot(tmp_path, rows)
    query = np.ones(DIMENSION, dtype=np.float32)

    hits = snapshot.search(query, 5, {"doc_uri": "file:///doc-1.md", "page": [1, 2]})
    wanted = [row for row in rows if row["doc_uri"] == "file:///doc-1.md" and row["page"] in (1, 2)]

    assert [row["id"] for row, _ in hits] == exact_top(wanted, query, 5)
    assert snapshot.search(query, 5, {"page": 0})  # page 0 exists; None pages are excluded below
    assert all(row["page"] == 0 for row, _ in snapshot.search(query, 40, {"page": 0}))
    assert snapshot.search(query, 5, {"doc_uri": "file:///missing.md"}) == []


def test_k_larger_than_the_collection_and_an_empty_snapshot(tmp_path: Path) -> None:
    rows = make_rows(3)
    assert len(write_snapshot(tmp_path, rows).search(np.ones(DIMENSION, dtype=np.float32), 10)) == 3

    empty = write_snapshot(tmp_path / "empty", [])
    assert empty.search(np.ones(DIMENSION, dtype=np.float32), 10) == []


def test_write_replaces_atomically_and_the_cache_reopens_a_changed_file(tmp_path: Path) -> None:
    first = write_snapshot(tmp_path, make_rows(5))
    cache = OpenFileCache(DenseSnapshot.open)
    assert cache.get(first.path) is not None
    assert cache.get(first.path) is cache.get(first.path)

    second = write_snapshot(tmp_path, make_rows(9, seed=4))

    reopened = cache.get(second.path)
    assert reopened is not None and reopened.table.num_rows == 9
    assert [entry.name for entry in first.path.parent.iterdir()] == ["coll.arrow"]  # no partial files
    first.path.unlink()
    assert cache.get(first.path) is None


def test_an_unreadable_or_foreign_file_is_no_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "coll.arrow"
    assert DenseSnapshot.open(path) is None
    path.write_bytes(b"not arrow at all")
    assert DenseSnapshot.open(path) is None


def lite_collection(tmp_path: Path, manifest: dict[str, object]) -> Path:
    folder = tmp_path / "milvus.db" / "collections" / "coll"
    (folder / "wal").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "schema.json").write_text("{}", encoding="utf-8")
    return folder


MANIFEST = {
    "current_seq": 10,
    "version": 3,
    "partitions": {"_default": {"data_files": ["a"], "delta_files": []}},
}


def test_fingerprint_changes_with_writes_but_not_with_index_builds_or_compaction(tmp_path: Path) -> None:
    folder = lite_collection(tmp_path, MANIFEST)
    lite = tmp_path / "milvus.db"
    flushed = lite_fingerprint(lite, "coll")
    assert flushed is not None

    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, "version": 4}), encoding="utf-8")
    assert lite_fingerprint(lite, "coll") == flushed  # a new manifest version alone (index files)
    compacted = {
        **MANIFEST,
        "version": 5,
        "partitions": {"_default": {"data_files": ["b"], "delta_files": []}},
    }
    (folder / "manifest.json").write_text(json.dumps(compacted), encoding="utf-8")
    assert lite_fingerprint(lite, "coll") == flushed  # segments merged, tombstones collected: same rows

    (folder / "wal" / "wal_000011.arrow").write_bytes(b"x" * 10)
    assert lite_fingerprint(lite, "coll") != flushed  # an unflushed write
    (folder / "wal" / "wal_000011.arrow").unlink()
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, "current_seq": 11}), encoding="utf-8")
    assert lite_fingerprint(lite, "coll") != flushed  # the same write, flushed


def test_fingerprint_of_a_recreated_collection_differs(tmp_path: Path) -> None:
    folder = lite_collection(tmp_path, MANIFEST)
    lite = tmp_path / "milvus.db"
    before = lite_fingerprint(lite, "coll")
    (folder / "schema.json").unlink()
    (folder / "schema.json").write_text("{}", encoding="utf-8")
    os.utime(folder / "schema.json", ns=(1, 1))
    assert lite_fingerprint(lite, "coll") != before  # dropped and created again with the same writes


@pytest.mark.parametrize("manifest", [None, {"version": 1}, ["not", "a", "dict"]])
def test_fingerprint_of_an_unknown_layout_is_none(tmp_path: Path, manifest: object) -> None:
    if manifest is not None:
        lite_collection(tmp_path, manifest)  # type: ignore[arg-type]
    assert lite_fingerprint(tmp_path / "milvus.db", "coll") is None


def test_a_snapshot_written_in_blocks_ranks_and_filters_like_one_block(tmp_path: Path) -> None:
    rows = make_rows(50)
    query = np.random.default_rng(9).normal(size=DIMENSION).astype(np.float32)
    whole = write_snapshot(tmp_path / "whole", rows)
    blocks = write_snapshot(tmp_path / "blocks", rows, rows_per_block=8)

    assert len(whole.blocks) == 1 and len(blocks.blocks) == 4  # 14 + 14 + 14 rows, then the last 8
    assert [row["id"] for row, _ in blocks.search(query, 10)] == exact_top(rows, query, 10)
    filtered_blocks = blocks.search(query, 5, {"page": [1, 2]})
    filtered_whole = whole.search(query, 5, {"page": [1, 2]})
    assert [row for row, _ in filtered_blocks] == [row for row, _ in filtered_whole]
    # A matrix product over 8 rows and one over 50 may round the last bits differently (BLAS kernels).
    assert [score for _, score in filtered_blocks] == pytest.approx([score for _, score in filtered_whole])


def test_the_builder_writes_blocks_as_rows_arrive_and_an_abort_keeps_the_old_file(tmp_path: Path) -> None:
    kept = write_snapshot(tmp_path, make_rows(3))
    with SnapshotBuilder(
        kept.path, DIMENSION, fingerprint="fp-2", model_id="model", rows_per_block=4
    ) as builder:
        builder.add(make_rows(3))
        assert builder.rows == 0  # fewer than a block: kept (as Arrow) until more come
        builder.add(make_rows(3))
        assert builder.rows == 6  # a block's worth: on disk
        # leaving without commit(): the collection changed while it was read, say

    assert [entry.name for entry in kept.path.parent.iterdir()] == ["coll.arrow"]
    reopened = DenseSnapshot.open(kept.path)
    assert reopened is not None and reopened.fingerprint == "fp-1" and reopened.table.num_rows == 3


def test_rows_and_cosines_by_position_and_id_across_blocks(tmp_path: Path) -> None:
    rows = make_rows(50)
    snapshot = write_snapshot(tmp_path, rows, rows_per_block=8)
    wanted = [49, 3, 17, 3, 0, 42, 18, 25, 33, 9, 48, 1, 2, 31, 40, 44, 7, 12, 20]  # > 16: a take per block
    assert [row["id"] for row in snapshot.rows(wanted)] == [rows[index]["id"] for index in wanted]
    assert [row["id"] for row in snapshot.rows(wanted[:4])] == [rows[index]["id"] for index in wanted[:4]]
    query = np.random.default_rng(4).normal(size=DIMENSION).astype(np.float32)
    ids = [str(rows[index]["id"]) for index in (0, 20, 49)]
    expected = {
        chunk_id: float(vector @ query / np.linalg.norm(vector) / np.linalg.norm(query))
        for chunk_id, vector in ((str(row["id"]), np.asarray(row["dense"])) for row in rows)
        if chunk_id in ids
    }
    assert snapshot.cosines(query, [*ids, "absent"]) == pytest.approx(expected, abs=1e-5)
