"""Hybrid search ranks ids and scores, then reads the kept hits: the same answers as reading every candidate.

``search_index`` asks the index for ``(id, score)`` lists (``MilvusVectorIndex.rank``), fuses them and reads
the fields of the k kept (``MilvusVectorIndex.hits``). Before, it fused lists of full hits
(``index.search`` + ``fuse``); both are run here on a real Milvus Lite collection, from the snapshots and
from Milvus itself, and must agree on ids, order and scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.schema import ChunkRow, FilterValue, SearchHit, collection_name
from ods.settings import SearchSettings
from ods.stages.retrieve import fuse, search_index

MODEL = "all-MiniLM-L6-v2"
DIMENSION = 16
WORDS = [
    "invoice",
    "refund",
    "shipment",
    "warranty",
    "budget",
    "audit",
    "ledger",
    "contract",
    "tariff",
    "quota",
    "runner",
    "shoes",
    "morning",
    "policy",
    "returns",
    "customer",
    "payment",
    "delay",
    "parts",
    "labour",
    "year",
    "goods",
    "signed",
    "exceeded",
]
QUERIES = ["refund shipment", "budget audit ledger", "warranty parts labour", "late customer payment"]
CONDITIONS: list[Mapping[str, FilterValue] | None] = [
    None,
    {"doc_uri": "file:///docs/doc-1.md"},
    {"page": [1], "doc_uri": ["file:///docs/doc-0.md", "file:///docs/doc-2.md"]},
]
SETTINGS = [
    SearchSettings(),  # convex, z-scores: the default
    SearchSettings(candidates=20),  # fewer candidates than chunks
    SearchSettings(normalisation="minmax", exact_dense=True, dense_weight=0.7),
    SearchSettings(fusion="rrf"),
]


class QueryVectors:
    """An embedder for the test's questions: a fixed random vector per question (the index is real)."""

    model_id = MODEL

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return np.stack(
            [np.random.default_rng(sum(map(ord, text))).normal(size=DIMENSION) for text in texts]
        ).astype(np.float32)


def make_rows(count: int) -> list[ChunkRow]:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    return [
        ChunkRow(
            id=f"chunk-{number:04d}",
            kb="kb",
            doc_uri=f"file:///docs/doc-{number % 3}.md",
            doc_sha256=f"{number % 3:064d}",
            chunk_index=number,
            text=" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))),
            vector=vectors[number],
            page=number % 2 + 1,
            heading=f"Section {number % 7}",
        )
        for number in range(count)
    ]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[MilvusVectorIndex]:
    vector_index = MilvusVectorIndex(
        str(tmp_path / "milvus.db"), collection_name("kb", MODEL), DIMENSION, MODEL
    )
    vector_index.ensure_collection()
    vector_index.upsert(make_rows(150))
    vector_index.write_search_snapshot()
    yield vector_index
    vector_index.close()


RECORD = KnowledgeBaseRecord(
    id=1,
    name="kb",
    source_uri=None,
    embedding_model=MODEL,
    embedding_dim=DIMENSION,
    collection_name=collection_name("kb", MODEL),
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def hits_before(
    index: MilvusVectorIndex,
    query: str,
    k: int,
    conditions: Mapping[str, FilterValue] | None,
    search: SearchSettings,
) -> list[SearchHit]:
    """Hybrid search as ``search_index`` ran it before: full hits for every candidate, fused by ``fuse``."""
    vector = QueryVectors().embed([query])[0]
    depth = max(k, search.candidates)
    dense = index.search(vector=vector, mode="dense", k=depth, conditions=conditions)
    words = index.search(text=query, mode="bm25", k=depth, conditions=conditions)
    cosines: dict[str, float] = {}
    if search.fusion == "convex" and search.exact_dense:
        seen = {hit.id for hit in dense}
        cosines = index.dense_scores(vector, [hit.id for hit in words if hit.id not in seen])
    return fuse(dense, words, search, k, cosines)


def assert_same(found: list[SearchHit], expected: list[SearchHit]) -> None:
    assert [hit.id for hit in found] == [hit.id for hit in expected]
    assert [hit.score for hit in found] == pytest.approx([hit.score for hit in expected], abs=1e-6)
    assert [(hit.text, hit.doc_uri, hit.page, hit.heading, hit.metadata) for hit in found] == [
        (hit.text, hit.doc_uri, hit.page, hit.heading, hit.metadata) for hit in expected
    ]


def check_every_search(index: MilvusVectorIndex) -> None:
    embedder = QueryVectors()
    for query in QUERIES:
        vector = embedder.embed([query])[0]
        for conditions in CONDITIONS:
            for mode in ("dense", "bm25"):
                ranked = index.rank(vector=vector, text=query, mode=mode, k=30, conditions=conditions)
                full = index.search(vector=vector, text=query, mode=mode, k=30, conditions=conditions)
                assert_same(index.hits(ranked), full)
                found = search_index(index, embedder, RECORD, query, k=5, mode=mode, conditions=conditions)
                assert_same(found.hits, full[:5])
            for search in SETTINGS:
                found = search_index(
                    index,
                    embedder,
                    RECORD,
                    query,
                    k=5,
                    conditions=conditions,
                    search=search,
                )
                expected = hits_before(index, query, 5, conditions, search)
                assert expected, "every query finds something"
                assert_same(found.hits, expected)
                dense = index.search(vector=vector, mode="dense", k=1, conditions=conditions)
                assert found.best_similarity == pytest.approx(dense[0].score, abs=1e-6)


def test_ranked_hybrid_search_equals_fusing_full_hits_from_the_snapshots(index: MilvusVectorIndex) -> None:
    assert index.dense_search_source() == "snapshot" and index.bm25_search_source() == "snapshot"
    check_every_search(index)


def test_ranked_hybrid_search_equals_fusing_full_hits_from_milvus(index: MilvusVectorIndex) -> None:
    index.upsert(make_rows(150)[:1])  # a write retires both snapshots: Milvus answers every side
    assert index.dense_search_source() == "milvus" and index.bm25_search_source() == "milvus"
    check_every_search(index)


def test_hits_keep_the_order_given_and_skip_unknown_ids(index: MilvusVectorIndex) -> None:
    ranked = [("chunk-0007", 3.0), ("no-such-chunk", 2.0), ("chunk-0002", 1.0)]
    assert [(hit.id, hit.score, hit.chunk_index) for hit in index.hits(ranked)] == [
        ("chunk-0007", 3.0, 7),
        ("chunk-0002", 1.0, 2),
    ]
    assert index.hits([]) == []
