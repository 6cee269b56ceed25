"""The Milvus vector index on a real Milvus Lite file, one collection (and file) per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ods.adapters.milvus.client import VectorIndexError
from ods.adapters.milvus.index import MilvusVectorIndex, VectorIndex
from ods.adapters.milvus.schema import ChunkRow, build_filter, collection_name, milvus_string
from ods.adapters.models.embedder import SentenceTransformerEmbedder
from ods.domain.chunking import chunk_id

KB = "handbook"
MODEL = "all-MiniLM-L6-v2"
DIMENSION = 384

CORPUS = {
    "file:///docs/cats.md": [
        "Cats sleep between twelve and sixteen hours a day, mostly in short naps.",
        "A cat's whiskers sense changes in air currents around obstacles.",
    ],
    "file:///docs/tax.md": [
        "Quarterly estimated tax payments are due in April, June, September and January.",
        "Keep receipts for deductible business expenses for at least seven years.",
    ],
    'file:///docs/odd "name" \\ with\nnewline.md': [
        "The zymurgy laboratory ferments barley into ale using top-fermenting yeast.",
        "Volcanic eruptions eject ash columns high into the stratosphere.",
    ],
}


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[MilvusVectorIndex]:
    vector_index = MilvusVectorIndex(
        str(tmp_path / "milvus.db"), collection_name(KB, MODEL), DIMENSION, MODEL
    )
    vector_index.ensure_collection()
    yield vector_index
    vector_index.close()


def rows_for(
    embedder: SentenceTransformerEmbedder, uri: str, sha256: str, texts: list[str]
) -> list[ChunkRow]:
    vectors = embedder.embed(texts)
    return [
        ChunkRow(
            id=chunk_id(KB, uri, sha256, position),
            kb=KB,
            doc_uri=uri,
            doc_sha256=sha256,
            chunk_index=position,
            text=text,
            vector=vector,
            page=position + 1,
            heading=None if position else "Intro",
            metadata={"source": "test"},
        )
        for position, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]


def load_corpus(index: MilvusVectorIndex, embedder: SentenceTransformerEmbedder) -> None:
    for number, (uri, texts) in enumerate(CORPUS.items()):
        index.upsert(rows_for(embedder, uri, f"{number:064d}", texts))


def test_upsert_is_idempotent(index: MilvusVectorIndex, embedder: SentenceTransformerEmbedder) -> None:
    rows = rows_for(embedder, "file:///docs/cats.md", "a" * 64, CORPUS["file:///docs/cats.md"])

    assert index.upsert(rows) == 2
    assert index.upsert(rows) == 2

    assert index.count() == 2
    assert index.count({"doc_uri": "file:///docs/cats.md", "chunk_index": 1}) == 1


def test_changed_document_is_written_before_its_old_chunks_go(
    index: MilvusVectorIndex, embedder: SentenceTransformerEmbedder
) -> None:
    uri = 'file:///docs/odd "name" \\ with\nnewline.md'
    old_sha, new_sha = "1" * 64, "2" * 64
    index.upsert(rows_for(embedder, uri, old_sha, ["old one", "old two", "old three"]))
    index.upsert(rows_for(embedder, "file:///docs/other.md", old_sha, ["another document"]))

    index.upsert(rows_for(embedder, uri, new_sha, ["new one", "new two"]))
    assert index.count({"doc_uri": uri}) == 5  # both versions: the document is never absent
    index.delete_document(uri, keep_sha256=new_sha)

    assert index.count({"doc_uri": uri}) == 2
    assert index.count({"doc_uri": uri, "doc_sha256": new_sha}) == 2
    assert index.count({"doc_uri": "file:///docs/other.md"}) == 1

    index.delete_document(uri)
    assert index.count({"doc_uri": uri}) == 0
    assert index.count() == 1


def test_dense_bm25_and_hybrid_search_rank_the_relevant_chunk_first(
    index: MilvusVectorIndex, embedder: SentenceTransformerEmbedder
) -> None:
    load_corpus(index, embedder)
    question = "How many hours per day do cats sleep?"
    [query] = embedder.embed([question])

    dense = index.search(vector=query, mode="dense", k=3)
    bm25 = index.search(text="zymurgy barley ale", mode="bm25", k=3)
    hybrid = index.search(vector=query, text=question, mode="hybrid", k=3)

    assert dense[0].text.startswith("Cats sleep") and dense[0].score > dense[1].score
    assert bm25[0].text.startswith("The zymurgy") and bm25[0].score > 0
    assert bm25[0].doc_uri == 'file:///docs/odd "name" \\ with\nnewline.md'
    assert hybrid[0].text.startswith("Cats sleep")
    top = hybrid[0]
    assert (top.doc_uri, top.chunk_index, top.page, top.heading, top.metadata) == (
        "file:///docs/cats.md",
        0,
        1,
        "Intro",
        {"source": "test"},
    )
    assert top.id == chunk_id(KB, "file:///docs/cats.md", f"{0:064d}", 0)


def test_search_filters_by_document(index: MilvusVectorIndex, embedder: SentenceTransformerEmbedder) -> None:
    load_corpus(index, embedder)
    [query] = embedder.embed(["How many hours per day do cats sleep?"])

    hits = index.search(
        vector=query, text="cats sleep", mode="hybrid", k=5, conditions={"doc_uri": ["file:///docs/tax.md"]}
    )

    assert hits
    assert {hit.doc_uri for hit in hits} == {"file:///docs/tax.md"}


def test_collection_of_another_model_or_dimension_is_refused(
    tmp_path: Path, index: MilvusVectorIndex
) -> None:
    path = str(tmp_path / "milvus.db")
    other_dimension = MilvusVectorIndex(path, index.collection, 768, MODEL)
    other_model = MilvusVectorIndex(path, index.collection, DIMENSION, "bge-small")

    with pytest.raises(VectorIndexError, match="384-dimensional vectors of model 'all-MiniLM-L6-v2'"):
        other_dimension.ensure_collection()
    with pytest.raises(VectorIndexError, match="not 384-dimensional vectors of 'bge-small'"):
        other_model.drop()
    assert index.count() == 0  # the refused drop left the collection in place


def test_bad_rows_are_refused_before_anything_is_written(index: MilvusVectorIndex) -> None:
    good = ChunkRow("a" * 32, KB, "file:///a", "0" * 64, 0, "text", np.ones(DIMENSION, dtype=np.float32))
    short_vector = ChunkRow("b" * 32, KB, "file:///a", "0" * 64, 1, "text", [1.0, 0.0])

    with pytest.raises(VectorIndexError, match="2 dimensions"):
        index.upsert([good, short_vector])
    assert index.count() == 0
    with pytest.raises(VectorIndexError, match="text is 70000 bytes, over the 65535-byte limit"):
        index.upsert([replace(good, text="x" * 70_000)])


def test_overlong_headings_are_cut_on_a_character_boundary(index: MilvusVectorIndex) -> None:
    row = ChunkRow("a" * 32, KB, "file:///a", "0" * 64, 0, "text", np.ones(DIMENSION, dtype=np.float32))

    index.upsert([replace(row, heading="é" * 5000)])

    [hit] = index.search(text="text", mode="bm25", k=1)
    assert hit.heading == "é" * 1024


def test_drop_removes_only_its_own_collection(tmp_path: Path, index: MilvusVectorIndex) -> None:
    neighbour = MilvusVectorIndex(
        str(tmp_path / "milvus.db"), collection_name("other", MODEL), DIMENSION, MODEL
    )
    neighbour.ensure_collection()

    index.drop()

    assert neighbour.count() == 0
    assert index.count() == 0  # recreated on use, empty


def test_collection_names_are_valid_and_distinct() -> None:
    names = {collection_name(kb, model) for kb in ("a-b", "a_b", "A B", "ünï") for model in (MODEL, "m/1")}

    assert len(names) == 8
    assert all(name[0].isalpha() and name.replace("_", "").isalnum() and len(name) < 255 for name in names)


def test_filter_values_are_escaped_and_fields_checked() -> None:
    assert milvus_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert build_filter({"doc_uri": 'x" or id != "', "chunk_index": [1, 2]}) == (
        'chunk_index in [1, 2] and doc_uri == "x\\" or id != \\""'
    )
    with pytest.raises(VectorIndexError, match="cannot filter on 'text'"):
        build_filter({"text": "x"})
    with pytest.raises(VectorIndexError, match="takes int values"):
        build_filter({"page": "1"})


def test_milvus_index_satisfies_the_vector_index_protocol(index: MilvusVectorIndex) -> None:
    protocol_user: VectorIndex = index

    assert protocol_user.count() == 0
