"""Milvus restarting under an ingest batch (issue 19, item 6): a real Milvus Lite server process on a fixed
port is stopped in the middle of ``index_batch`` and started again from a thread; the batch completes with
every chunk indexed exactly once. A server that never comes back fails the batch with one clear error and
leaves the catalog as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ods.adapters.catalog import Catalog
from ods.adapters.milvus.client import VectorIndexUnavailable, open_milvus_client
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.schema import ChunkRow
from ods.domain.chunking import chunk_id
from ods.domain.sync_plan import ListedDocument
from ods.stages.ingest import UPSERT_ROWS, BatchReport, PendingDocument, PreparedBatch, index_batch
from tests.support.milvus_server import MilvusLiteServer

DIMENSION = 4
KB = "kb_restart"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MilvusLiteServer]:
    server = MilvusLiteServer(tmp_path / "milvus")
    server.start()
    yield server
    server.close()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}") as opened:
        opened.ensure_knowledge_base(
            KB, embedding_model="test-model", embedding_dim=DIMENSION, collection_name="kb_restart_test"
        )
        yield opened


def _index(server: MilvusLiteServer, retry_s: float = 60.0) -> MilvusVectorIndex:
    index = MilvusVectorIndex(
        open_milvus_client(server.uri),
        "kb_restart_test",
        DIMENSION,
        "test-model",
        owns_client=True,
        uri=server.uri,
        retry_s=retry_s,
    )
    index.ensure_collection()
    return index


def _document(name: str, sha256: str, chunks: int) -> PendingDocument:
    uri = f"file:///docs/{name}"
    rows = [
        ChunkRow(
            id=chunk_id(KB, uri, sha256, number),
            kb=KB,
            doc_uri=uri,
            doc_sha256=sha256,
            chunk_index=number,
            text=f"{name} version {sha256[:4]} part {number}",
            vector=np.eye(DIMENSION, dtype=np.float32)[number % DIMENSION],
        )
        for number in range(chunks)
    ]
    return PendingDocument(ListedDocument(uri, f"etag-{sha256[:4]}", 100), sha256, "text", rows)


def _batch(*documents: PendingDocument) -> PreparedBatch:
    return PreparedBatch(BatchReport(), list(documents))


class StoppedAfterFirstUpsert:
    """The real index; its server is stopped (SIGTERM, as a restart does) as soon as the first upsert call
    of the batch returns, and started again ``down_s`` later from a thread (never, with ``None``)."""

    def __init__(self, index: MilvusVectorIndex, server: MilvusLiteServer, down_s: float | None) -> None:
        self._index, self._server, self._down_s = index, server, down_s
        self.upserts = 0

    def upsert(self, rows: Sequence[ChunkRow]) -> int:
        written = self._index.upsert(rows)
        self.upserts += 1
        if self.upserts == 1:
            self._server.stop()
            if self._down_s is not None:
                self._server.restart_after(self._down_s)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


def test_a_batch_completes_through_a_server_restart_with_every_chunk_once(
    server: MilvusLiteServer, catalog: Catalog
) -> None:
    index = _index(server)
    try:
        index_batch(catalog=catalog, index=index, kb=KB, prepared=_batch(_document("a.md", "a" * 64, 5)))
        # a.md changed, b.md is new: two upsert calls (over UPSERT_ROWS rows), a delete, a flush
        changed, new = (
            _document("a.md", "b" * 64, UPSERT_ROWS // 2 + 50),
            _document("b.md", "c" * 64, UPSERT_ROWS // 2),
        )
        restarting = StoppedAfterFirstUpsert(index, server, down_s=1.0)

        report = index_batch(catalog=catalog, index=restarting, kb=KB, prepared=_batch(changed, new))  # type: ignore[arg-type]

        expected = {row.id for row in (*changed.rows, *new.rows)}
        ids = [chunk for chunk, _ in index.chunk_ids()]
    finally:
        index.close()
    assert restarting.upserts == 2 and report.chunks == len(expected) == UPSERT_ROWS + 50
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected  # each chunk once, no old one
    assert set(catalog.indexed_chunk_ids(KB)) == expected
    assert catalog.knowledge_base_counts(KB).versions == {"indexed": 2, "superseded": 1}


def test_a_server_that_never_comes_back_fails_the_batch_clearly_and_a_rerun_converges(
    server: MilvusLiteServer, catalog: Catalog
) -> None:
    document = _document("a.md", "a" * 64, UPSERT_ROWS + 10)
    index = _index(server, retry_s=3.0)
    try:
        with pytest.raises(VectorIndexUnavailable) as raised:
            index_batch(
                catalog=catalog,
                index=StoppedAfterFirstUpsert(index, server, down_s=None),  # type: ignore[arg-type]
                kb=KB,
                prepared=_batch(document),
            )
    finally:
        index.close()
    message = str(raised.value)
    assert message.startswith(f"Milvus at {server.uri} is unavailable: could not upsert chunks into")
    assert "check that Milvus is running and reachable" in message and "ODS_MILVUS__URI" in message
    assert catalog.documents(KB) == []  # nothing recorded: the next run reads the document again

    server.start()
    again = _index(server)
    try:
        index_batch(catalog=catalog, index=again, kb=KB, prepared=_batch(document))
        ids = [chunk for chunk, _ in again.chunk_ids()]
    finally:
        again.close()
    assert len(ids) == len(set(ids)) == len(document.rows)
    assert set(catalog.indexed_chunk_ids(KB)) == set(ids)
