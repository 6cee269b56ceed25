"""Dense snapshots of a real Milvus Lite collection: same answers as Milvus, never stale."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ods.adapters.milvus.client import open_milvus_client
from ods.adapters.milvus.dense_snapshot import snapshot_path
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.lite_server import stop_lite_servers
from ods.adapters.milvus.schema import ChunkRow, collection_name

MODEL = "all-MiniLM-L6-v2"
DIMENSION = 384
WORDS = [
    "invoice",
    "refund",
    "warranty",
    "shipment",
    "ledger",
    "audit",
    "budget",
    "contract",
    "quota",
    "tariff",
]


def make_rows(count: int, seed: int = 11) -> list[ChunkRow]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    return [
        ChunkRow(
            id=f"{number:032x}",
            kb="kb",
            doc_uri=f"file:///docs/doc-{number % 6}.md",
            doc_sha256=f"{number % 6:064d}",
            chunk_index=number,
            text=" ".join(str(rng.choice(WORDS)) for _ in range(12)),
            vector=vectors[number],
            page=number % 4 or None,
            heading=f"Section {number % 3}",
            metadata={"n": number},
        )
        for number in range(count)
    ]


@pytest.fixture
def lite_file(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


@pytest.fixture
def index(lite_file: str) -> Iterator[MilvusVectorIndex]:
    vector_index = MilvusVectorIndex(lite_file, collection_name("kb", MODEL), DIMENSION, MODEL)
    vector_index.ensure_collection()
    vector_index.upsert(make_rows(240))
    yield vector_index
    vector_index.close()


def queries(count: int = 4) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(count, DIMENSION)).astype(np.float32)


def answers(index: MilvusVectorIndex, **search: object) -> list[list[tuple[str, float]]]:
    return [
        [(hit.id, hit.score) for hit in index.search(vector=query, **search)]  # type: ignore[arg-type]
        for query in queries()
    ]


def assert_same(first: list[list[tuple[str, float]]], second: list[list[tuple[str, float]]]) -> None:
    """The same scores in the same order, and the same hit wherever a score is not tied.

    Hybrid search fuses ranks, so hits ranked by one side only at the same rank tie exactly; which of
    them Milvus returns first, or keeps at the cut, is arbitrary.
    """
    for hits, other in zip(first, second, strict=True):
        scores = [score for _, score in hits]
        assert scores == pytest.approx([score for _, score in other], abs=1e-5)
        for position, ((chunk, score), (other_chunk, _)) in enumerate(zip(hits, other, strict=True)):
            at_cut = abs(score - scores[-1]) < 1e-5  # may tie with a hit below the cut
            if sum(abs(score - each) < 1e-5 for each in scores) == 1 and not at_cut:
                assert chunk == other_chunk, f"hit {position} differs"


def test_the_snapshot_answers_as_milvus_does(index: MilvusVectorIndex) -> None:
    index.flush()  # Milvus's side searched from sealed, indexed segments (HNSW, ef 256: exact here)
    searches: list[dict[str, object]] = [
        {"mode": "dense", "k": 10},
        {
            "mode": "dense",
            "k": 5,
            "conditions": {"doc_uri": ["file:///docs/doc-1.md", "file:///docs/doc-4.md"]},
        },
        {"mode": "dense", "k": 5, "conditions": {"page": 2, "heading": "Section 1"}},
        {"mode": "hybrid", "k": 8, "text": "refund warranty"},
    ]
    assert index.dense_search_source() == "milvus"
    by_milvus = [answers(index, **search) for search in searches]

    assert index.write_search_snapshot() == 240

    assert index.dense_search_source() == "snapshot"
    for search, expected in zip(searches, by_milvus, strict=True):
        assert_same(answers(index, **search), expected)
    [hit] = index.search(vector=queries()[0], mode="dense", k=1)
    assert (hit.metadata, hit.heading) == ({"n": hit.chunk_index}, f"Section {hit.chunk_index % 3}")
    assert hit.page == (hit.chunk_index % 4 or None)


def test_a_write_by_any_client_sends_search_back_to_milvus(index: MilvusVectorIndex, lite_file: str) -> None:
    index.write_search_snapshot()
    # Another client of the same file, that knows nothing of snapshots (as another tool would be).
    other = MilvusVectorIndex(
        open_milvus_client(lite_file), index.collection, DIMENSION, MODEL, owns_client=True
    )
    [query] = queries(1)
    planted = ChunkRow("f" * 32, "kb", "file:///docs/new.md", "9" * 64, 0, "planted", query)

    other.upsert([planted])

    assert index.dense_search_source() == "milvus"
    assert index.search(vector=query, mode="dense", k=1)[0].id == planted.id

    assert index.write_search_snapshot() == 241
    assert index.search(vector=query, mode="dense", k=1)[0].id == planted.id
    other.delete_document("file:///docs/new.md")

    assert index.dense_search_source() == "milvus"
    assert index.search(vector=query, mode="dense", k=1)[0].id != planted.id
    other.close()


def test_writes_through_the_index_remove_its_snapshot(index: MilvusVectorIndex, lite_file: str) -> None:
    path = snapshot_path(lite_file, index.collection)
    index.write_search_snapshot()
    assert path.exists()

    index.delete_document("file:///docs/doc-0.md")

    assert not path.exists() and index.dense_search_source() == "milvus"
    assert index.write_search_snapshot() == 200
    index.drop()
    assert not path.exists()


def test_an_index_given_a_client_without_its_file_keeps_no_snapshot(lite_file: str) -> None:
    index = MilvusVectorIndex(
        open_milvus_client(lite_file), collection_name("kb", MODEL), DIMENSION, MODEL, owns_client=True
    )
    index.upsert(make_rows(10))

    assert index.write_search_snapshot() is None  # flushed, nothing written (as with a Milvus server)
    assert index.dense_search_source() == "milvus"
    assert not snapshot_path(lite_file, index.collection).exists()
    index.close()


def test_a_new_process_opening_the_file_uses_the_snapshot(index: MilvusVectorIndex, lite_file: str) -> None:
    """Opening and loading the file (as `ods kb search` does in a new process) is no write."""
    index.write_search_snapshot()
    index.close()
    stop_lite_servers()  # this process's server holds the file's lock
    script = (
        "import sys; from ods.adapters.milvus.index import MilvusVectorIndex; "
        "index = MilvusVectorIndex(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]); "
        "index.ensure_collection(); print(index.dense_search_source())"
    )
    opened = subprocess.run(
        [sys.executable, "-c", script, lite_file, index.collection, str(DIMENSION), MODEL],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    assert opened.stdout.strip().splitlines()[-1] == "snapshot"


def test_compaction_of_flushed_segments_keeps_the_snapshot(lite_file: str) -> None:
    """An ingest flushes once per batch; after the fourth small segment Milvus Lite merges them in the
    background, rewriting data files without changing a row. That is no write: the snapshot written as
    the merge runs is kept and stays in use after it."""
    index = MilvusVectorIndex(lite_file, collection_name("kb", MODEL), DIMENSION, MODEL)
    index.ensure_collection()
    rows = make_rows(2_000)
    for start in range(0, len(rows), 500):  # four sealed segments: Lite's compaction trigger
        index.upsert(rows[start : start + 500])
        index.flush()
    written = index.write_search_snapshot()
    manifest = Path(lite_file) / "collections" / index.collection / "manifest.json"

    def data_files() -> int:
        partitions = json.loads(manifest.read_text(encoding="utf-8"))["partitions"]
        return sum(len(files["data_files"]) for files in partitions.values())

    deadline = time.monotonic() + 60
    while data_files() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)

    assert data_files() == 1, "Milvus Lite did not merge its four segments"
    assert written == 2_000
    assert index.dense_search_source() == "snapshot"
    index.close()
