"""BM25 from the sparse snapshot of a real Milvus Lite collection: stemmed, exact, never stale."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ods.adapters.milvus.client import open_milvus_client
from ods.adapters.milvus.dense_snapshot import snapshot_due, snapshot_path
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.schema import ChunkRow, collection_name
from ods.adapters.milvus.sparse_snapshot import sparse_path
from ods.domain.text_analysis import analyze_english

MODEL = "all-MiniLM-L6-v2"
DIMENSION = 16
TEXTS = [
    "The runner runs every morning before work.",
    "Running shoes wear out after a year of running.",
    "Invoices are paid within thirty days of receipt.",
    "A refund is issued when the shipment is returned.",
    "The warranty covers parts and labour for two years.",
    "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
    "人人生而自由，在尊严和权利上一律平等。",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "The audit of the ledger found the budget was exceeded.",
    "Tariffs and quotas limit the shipment of goods.",
    "Contracts signed in the budget year are audited.",
    "It is what it is, and that is that.",
]


def make_rows(texts: list[str], doc: str = "doc") -> list[ChunkRow]:
    vectors = np.random.default_rng(3).normal(size=(len(texts), DIMENSION)).astype(np.float32)
    return [
        ChunkRow(
            id=f"{doc}-{number:04d}",
            kb="kb",
            doc_uri=f"file:///docs/{doc}-{number % 3}.md",
            doc_sha256=f"{number % 3:064d}",
            chunk_index=number,
            text=text,
            vector=vectors[number],
            page=number % 2 + 1,
        )
        for number, text in enumerate(texts)
    ]


@pytest.fixture
def lite_file(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


@pytest.fixture
def index(lite_file: str) -> Iterator[MilvusVectorIndex]:
    vector_index = MilvusVectorIndex(lite_file, collection_name("kb", MODEL), DIMENSION, MODEL)
    vector_index.ensure_collection()
    vector_index.upsert(make_rows(TEXTS))
    vector_index.write_search_snapshot()
    yield vector_index
    vector_index.close()


def exact_bm25(texts: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> dict[int, float]:
    """BM25 as Milvus scores it, written out term by term (the test's own reference)."""
    documents = [Counter(analyze_english(text)) for text in texts]
    lengths = [sum(document.values()) for document in documents]
    average = sum(lengths) / len(lengths)
    scores: dict[int, float] = {}
    for term, weight in Counter(analyze_english(query)).items():
        df = sum(term in document for document in documents)
        idf = math.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
        for row, document in enumerate(documents):
            if tf := document[term]:
                norm = tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[row] / average))
                scores[row] = scores.get(row, 0.0) + weight * idf * norm
    return scores


def rows_of(index: MilvusVectorIndex, query: str, **search: object) -> list[int]:
    return [hit.chunk_index for hit in index.search(text=query, mode="bm25", **search)]  # type: ignore[arg-type]


def test_bm25_comes_from_the_snapshot_and_equals_an_exact_bm25(index: MilvusVectorIndex) -> None:
    assert index.bm25_search_source() == "snapshot"
    assert index.analyzer == "english"
    for query in ["running shoes", "budget audit ledger", "shipment refund shipment", "warranty years"]:
        hits = index.search(text=query, mode="bm25", k=5)
        expected = exact_bm25(TEXTS, query)
        assert [hit.score for hit in hits] == pytest.approx(
            sorted(expected.values(), reverse=True)[:5], rel=1e-5
        )
        assert all(expected[hit.chunk_index] == pytest.approx(hit.score, rel=1e-5) for hit in hits)
        assert hits[0].text == TEXTS[hits[0].chunk_index] and hits[0].doc_uri.startswith("file:///docs/")


def test_stems_match_and_stop_words_are_ignored(index: MilvusVectorIndex) -> None:
    assert set(rows_of(index, "running")) == {0, 1}  # "runs" and "running" (not "runner")
    assert set(rows_of(index, "audits")) == {8, 10}  # "audit", "audited"
    assert rows_of(index, "the is and that it") == []  # stop words only: nothing to match
    assert rows_of(index, "the audits")[:2] == rows_of(index, "audits")[:2]


def test_korean_chinese_and_cyrillic_text_is_found(index: MilvusVectorIndex) -> None:
    assert rows_of(index, "인간")[0] == 5  # a word inside "인간은": CJK runs are indexed as bigrams
    assert rows_of(index, "존엄 권리")[0] == 5
    assert rows_of(index, "尊严")[0] == 6
    assert rows_of(index, "свободными")[0] == 7


def test_filters_are_honoured(index: MilvusVectorIndex) -> None:
    everything = rows_of(index, "running budget shipment audit")
    on_page_one = rows_of(index, "running budget shipment audit", conditions={"page": 1})
    assert on_page_one == [row for row in everything if row % 2 == 0]
    one_doc = rows_of(
        index, "running budget shipment audit", conditions={"doc_uri": ["file:///docs/doc-1.md"]}
    )
    assert one_doc == [row for row in everything if row % 3 == 1]


def test_a_write_discards_it_and_the_next_snapshot_serves_the_new_rows(
    index: MilvusVectorIndex, lite_file: str
) -> None:
    dense_file = snapshot_path(lite_file, index.collection)
    assert sparse_path(dense_file).is_file()
    index.delete_document("file:///docs/doc-0.md")  # rows 0, 3, 6, 9
    assert not sparse_path(dense_file).exists()
    assert index.bm25_search_source() == "milvus" and index.analyzer == "standard"
    assert 0 not in rows_of(index, "runs")  # Milvus Lite's own BM25 (no stemming): "runs" only in row 0
    assert index.write_search_snapshot() == len(TEXTS) - 4
    assert index.bm25_search_source() == "snapshot"
    assert set(rows_of(index, "running")) == {1}

    index.upsert(make_rows(["The runners ran and kept running."], doc="new"))  # re-ingest
    index.write_search_snapshot()
    assert set(rows_of(index, "running")) == {0, 1}  # chunk 0 of the new document, row 1 of the old


def test_a_stale_sparse_snapshot_is_never_used(index: MilvusVectorIndex, lite_file: str) -> None:
    dense_file = snapshot_path(lite_file, index.collection)
    stale = sparse_path(dense_file).read_bytes()
    # Another client writes: the dense snapshot (and with it the sparse one) no longer matches.
    other = open_milvus_client(lite_file)
    try:
        other.delete(index.collection, filter='doc_uri == "file:///docs/doc-1.md"')
    finally:
        other.close()
    assert index.bm25_search_source() == "milvus"
    assert snapshot_due(lite_file, index.collection, MODEL, "english")
    index.write_search_snapshot()
    assert not snapshot_due(lite_file, index.collection, MODEL, "english")
    # A sparse snapshot of an earlier dense snapshot put back beside the current one is refused.
    sparse_path(dense_file).write_bytes(stale)
    assert index.bm25_search_source() == "milvus"
    assert snapshot_due(lite_file, index.collection, MODEL, "english")
    assert not snapshot_due(lite_file, index.collection, MODEL)  # the dense one alone is current
    # A dense snapshot whose sparse one was never written (taken before sparse snapshots existed).
    sparse_path(dense_file).unlink()
    assert index.bm25_search_source() == "milvus"
    index.write_search_snapshot()
    assert index.bm25_search_source() == "snapshot"


def test_an_index_with_another_analyzer_does_not_use_an_english_snapshot(
    index: MilvusVectorIndex, lite_file: str
) -> None:
    standard = MilvusVectorIndex(
        lite_file, collection_name("kb", MODEL), DIMENSION, MODEL, analyzer="standard"
    )
    try:
        assert standard.bm25_search_source() == "milvus"
        standard.write_search_snapshot()
        assert standard.bm25_search_source() == "snapshot" and standard.analyzer == "standard"
        assert set(rows_of(standard, "running")) == {1}  # unstemmed: "running" only
        assert index.bm25_search_source() == "milvus"  # the english index's snapshot was replaced
    finally:
        standard.close()


def test_dense_scores_are_exact_cosines_from_snapshot_and_milvus(index: MilvusVectorIndex) -> None:
    query = np.random.default_rng(9).normal(size=DIMENSION).astype(np.float32)
    vectors = np.random.default_rng(3).normal(size=(len(TEXTS), DIMENSION)).astype(np.float32)
    expected = {
        f"doc-{n:04d}": float(vectors[n] @ query / np.linalg.norm(vectors[n]) / np.linalg.norm(query))
        for n in (0, 5, 11)
    }
    ids = [*expected, "no-such-chunk"]
    assert index.dense_search_source() == "snapshot"
    assert index.dense_scores(query, ids) == pytest.approx(expected, abs=1e-5)
    index.upsert(make_rows(["an unrelated new chunk"], doc="other"))  # snapshot gone: Milvus answers
    assert index.dense_search_source() == "milvus"
    assert index.dense_scores(query, ids) == pytest.approx(expected, abs=1e-5)
    assert index.dense_scores(query, []) == {}
