"""The vector index: Milvus (a Milvus Lite file by default, a Milvus server by URI).

Connections, errors and the retry loop are ``ods.adapters.milvus.client``'s, the collection's schema,
names and filter expressions ``ods.adapters.milvus.schema``'s; this module holds the reads and writes of
one knowledge base's chunks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from ods.adapters.milvus.client import (
    VectorIndexError,
    is_server_uri,
    milvus_errors,
    open_milvus_client,
    retry_transient,
)
from ods.adapters.milvus.dense_snapshot import (
    SNAPSHOTS,
    DenseSnapshot,
    SnapshotBuilder,
    current_snapshot,
    lite_fingerprint,
    snapshot_path,
)
from ods.adapters.milvus.schema import (
    ChunkRow,
    FilterValue,
    SearchHit,
    build_filter,
    check_chunk_collection,
    checked_vector,
    chunk_record,
    collection_analyzer,
    create_chunk_collection,
    dense_search_params,
    milvus_hit,
    milvus_string,
    search_hit,
    snapshot_hit,
)
from ods.adapters.milvus.sparse_snapshot import (
    SparseSnapshot,
    current_sparse_snapshot,
    discard_sparse_snapshot,
    write_sparse_snapshot,
)
from ods.adapters.workers.process_memory import release_free_memory
from ods.domain.rank_fusion import RRF_K, reciprocal_rank_fusion
from ods.domain.text_analysis import ANALYZERS, AnalyzerName

if TYPE_CHECKING:
    from pymilvus import MilvusClient


logger = logging.getLogger(__name__)
T = TypeVar("T")

SearchMode = Literal["dense", "bm25", "hybrid"]
RankMode = Literal["dense", "bm25"]
_OUTPUT_FIELDS = ["doc_uri", "doc_sha256", "chunk_index", "text", "page", "heading", "metadata"]


class VectorIndex(Protocol):
    """What ingestion and retrieval need from a vector index (``MilvusVectorIndex`` implements it)."""

    def ensure_collection(self) -> None: ...

    def upsert(self, rows: Sequence[ChunkRow]) -> int: ...

    def delete_document(self, uri: str, keep_sha256: str | None = None) -> None: ...

    def write_search_snapshot(self) -> int | None: ...

    @property
    def analyzer(self) -> str: ...

    def dense_scores(
        self, vector: Sequence[float] | NDArray[np.float32], ids: Sequence[str]
    ) -> dict[str, float]: ...

    def delete_other_versions(self, current: Mapping[str, str]) -> None: ...

    def count(self, conditions: Mapping[str, FilterValue] | None = None) -> int: ...

    def flush(self) -> None: ...

    def search(
        self,
        *,
        vector: Sequence[float] | NDArray[np.float32] | None = None,
        text: str | None = None,
        mode: SearchMode = "hybrid",
        k: int = 10,
        conditions: Mapping[str, FilterValue] | None = None,
    ) -> list[SearchHit]: ...

    def rank(
        self,
        *,
        vector: Sequence[float] | NDArray[np.float32] | None = None,
        text: str | None = None,
        mode: RankMode = "dense",
        k: int = 10,
        conditions: Mapping[str, FilterValue] | None = None,
    ) -> list[tuple[str, float]]: ...

    def hits(self, ranked: Sequence[tuple[str, float]]) -> list[SearchHit]: ...


class MilvusVectorIndex:
    """One knowledge base's chunks for one embedding model: dense + BM25 vectors in one collection.

    Writes are upserts keyed by content-derived ids, so re-running an ingest changes nothing; a changed
    document is written first and its old chunks deleted after (``delete_document(uri, keep_sha256=...)``).

    Every call to Milvus is retried with backoff while it fails transiently (``is_transient_milvus_error``:
    a restarting or unreachable server), for up to ``retry_s`` seconds; then :class:`VectorIndexUnavailable`
    names the URI. Retrying is safe because every call is idempotent: upserts are keyed by content-derived
    primary keys (a repeated upsert rewrites the same rows), deletes are by filter, flush and load are
    no-ops the second time, and creating the collection is re-checked first.
    """

    def __init__(
        self,
        client_or_uri: MilvusClient | str,
        collection: str,
        dimension: int,
        model_id: str,
        *,
        index_type: Literal["HNSW", "FLAT"] = "HNSW",
        analyzer: AnalyzerName = "english",
        timeout_s: float = 30.0,
        owns_client: bool | None = None,
        lite_file: str | Path | None = None,
        uri: str | None = None,
        retry_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``owns_client``: close the client in :meth:`close` (default: only when this index opened it).
        ``lite_file``: the Milvus Lite file the client serves (taken from ``client_or_uri`` when that is
        one), so dense search can use the collection's dense snapshot (``ods.adapters.milvus.dense_snapshot``).
        ``uri``: the configured Milvus URI, named in errors (taken from ``client_or_uri`` when that is one).
        ``analyzer``: how BM25 analyzes text (``ods.domain.text_analysis``): the analyzer a new collection on a
        Milvus server is created with, and the one of a Milvus Lite file's sparse snapshot (Milvus Lite's own
        full-text search, the fallback, always uses its standard analyzer).
        ``retry_s``: how long a call keeps retrying transient faults (0: fail at the first); ``sleep`` and
        ``clock`` time those retries (tests pass their own)."""
        if dimension < 1:
            raise VectorIndexError(f"embedding dimension must be positive, got {dimension}")
        if retry_s < 0:
            raise VectorIndexError(f"retry_s must be 0 or more seconds, got {retry_s}")
        if analyzer not in ANALYZERS:
            raise VectorIndexError(f"unknown analyzer {analyzer!r}; known: {', '.join(ANALYZERS)}")
        self._owns_client = isinstance(client_or_uri, str) if owns_client is None else owns_client
        self._client = open_milvus_client(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
        self.collection = collection
        self.dimension = dimension
        self.model_id = model_id
        self._index_type = index_type
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._sleep = sleep
        self._clock = clock
        self._uri = uri or (client_or_uri if isinstance(client_or_uri, str) else None)
        self._ready = False
        if lite_file is None and isinstance(client_or_uri, str) and not is_server_uri(client_or_uri):
            lite_file = client_or_uri
        self._snapshot_path = snapshot_path(lite_file, collection) if lite_file is not None else None
        self._lite_file = lite_file
        self._analyzer: AnalyzerName = analyzer
        self._server = self._uri is not None and is_server_uri(self._uri)
        self._collection_analyzer: str | None = None

    def close(self) -> None:
        """Close the client if this index opened it."""
        if self._owns_client:
            self._client.close()

    def ensure_collection(self) -> None:
        """Create the collection (or check the existing one matches this model) and load it for search."""

        def prepare() -> None:
            if self._client.has_collection(self.collection, timeout=self._timeout_s):
                self._check_existing()
            elif not self._server:
                create(named_analyzer=False)
            else:
                try:
                    create(named_analyzer=True)
                except Exception as error:
                    # A standalone Milvus Lite server (`milvus-lite server`) answers like a server but knows
                    # only its standard analyzer: the collection is made with that one, and says so.
                    if "unknown tokenizer type" not in str(error):
                        raise
                    logger.warning(
                        "Milvus at %s has no %r analyzer (%s); collection %r uses its standard analyzer",
                        self._uri,
                        self._analyzer,
                        error,
                        self.collection,
                    )
                    create(named_analyzer=False)
            # A Milvus Lite file reopened by a new process holds its collections released.
            self._client.load_collection(self.collection, timeout=self._timeout_s)

        def create(*, named_analyzer: bool) -> None:
            create_chunk_collection(
                self._client,
                self.collection,
                model_id=self.model_id,
                dimension=self.dimension,
                index_type=self._index_type,
                analyzer=self._analyzer if named_analyzer else None,
                timeout_s=self._timeout_s,
            )

        self._retrying("prepare", prepare)
        self._ready = True

    def upsert(self, rows: Sequence[ChunkRow]) -> int:
        """Write ``rows`` (insert or replace by id); all rows are checked before any is written."""
        self._ensure()
        records = [self._record(row) for row in rows]
        if not records:
            return 0
        self._discard_snapshot()
        result = self._retrying(
            "upsert chunks into",
            lambda: self._client.upsert(self.collection, records, timeout=self._timeout_s),
        )
        return int(result.get("upsert_count", len(records)))

    def delete_document(self, uri: str, keep_sha256: str | None = None) -> None:
        """Delete the chunks of document ``uri``, all of them or those not of version ``keep_sha256``."""
        self._ensure()
        expression = build_filter({"doc_uri": uri})
        if keep_sha256 is not None:
            expression += f" and doc_sha256 != {milvus_string(keep_sha256)}"
        self._discard_snapshot()
        self._delete(f"delete chunks of {uri!r} from", expression)

    def _delete(self, action: str, expression: str) -> None:
        """Delete the rows matching ``expression`` (retried: deleting twice deletes nothing more)."""
        self._retrying(
            action, lambda: self._client.delete(self.collection, filter=expression, timeout=self._timeout_s)
        )

    def flush(self) -> None:
        """Seal what was written into indexed segments: unsealed rows are searched by brute force.

        Milvus Lite searched 100k freshly written chunks ~4x slower than the same chunks after a flush
        (benchmarks/retrieval.py), so an ingest run ends with one.
        """
        self._ensure()
        self._retrying("flush", lambda: self._client.flush(self.collection, timeout=self._timeout_s))

    def write_search_snapshot(self, *, batch_rows: int = 2_000) -> int | None:
        """Flush, then write the collection's dense snapshot for exact in-process dense search (a Milvus
        Lite file only; see ``ods.adapters.milvus.dense_snapshot``). Returns the rows written, or ``None`` when
        there is nothing to snapshot (a server) or the collection changed while it was read."""
        self.flush()
        if self._snapshot_path is None or self._lite_file is None:
            return None
        before = lite_fingerprint(self._lite_file, self.collection)
        if before is None:
            logger.warning("unknown Milvus Lite layout at %s: no dense snapshot written", self._lite_file)
            return None
        with (
            milvus_errors("read every chunk of", self.collection),
            SnapshotBuilder(
                self._snapshot_path, self.dimension, fingerprint=before, model_id=self.model_id
            ) as builder,
        ):
            iterator = self._client.query_iterator(
                self.collection,
                batch_size=batch_rows,
                filter="",
                output_fields=["kb", *_OUTPUT_FIELDS, "dense"],
                timeout=self._timeout_s,
            )
            try:
                while rows := iterator.next():
                    builder.add(rows)
                    del rows
                    release_free_memory()  # pymilvus's per-call garbage, or the process grows by ~5 MB a call
            finally:
                iterator.close()
            if lite_fingerprint(self._lite_file, self.collection) != before:
                logger.warning(
                    "collection %s changed while its dense snapshot was read; not written", self.collection
                )
                return None
            written = builder.commit()
        SNAPSHOTS.forget(self._snapshot_path)
        self._write_sparse_snapshot()
        return written

    def _write_sparse_snapshot(self) -> SparseSnapshot | None:
        """Build the BM25 sparse snapshot from the dense snapshot just written (its text column, its rows)."""
        if self._snapshot_path is None:
            return None
        dense = SNAPSHOTS.get(self._snapshot_path)
        if dense is None:
            return None
        texts = dense.table.column("text").to_pylist()
        return write_sparse_snapshot(self._snapshot_path, texts, self._analyzer)

    def delete_other_versions(self, current: Mapping[str, str], *, per_call: int = 128) -> None:
        """For each document URI → current sha256, delete its chunks of any other version (few calls)."""
        self._ensure()
        items = sorted(current.items())
        if items:
            self._discard_snapshot()
        for start in range(0, len(items), per_call):
            clauses = [
                f"(doc_uri == {milvus_string(uri)} and doc_sha256 != {milvus_string(sha256)})"
                for uri, sha256 in items[start : start + per_call]
            ]
            self._delete(f"delete old chunks of {len(clauses)} document(s) from", " or ".join(clauses))

    def chunk_ids(self, *, batch_rows: int = 5_000) -> Iterator[tuple[str, str]]:
        """Every chunk's ``(id, doc_uri)``, read page by page (``batch_rows`` per call), for comparing the
        index with the catalog (``ods kb verify``). A fault while reading is raised, not retried (the
        pages already read would be yielded again); opening the iterator (its first query) is retried."""
        self._ensure()
        iterator = self._retrying(
            "read the chunk ids of",
            lambda: self._client.query_iterator(
                self.collection,
                batch_size=batch_rows,
                filter="",
                output_fields=["doc_uri"],
                timeout=self._timeout_s,
            ),
        )
        with milvus_errors("read the chunk ids of", self.collection):
            try:
                while rows := iterator.next():
                    for row in rows:
                        yield str(row["id"]), str(row["doc_uri"])
            finally:
                iterator.close()

    def delete_ids(self, ids: Sequence[str], *, per_call: int = 500) -> None:
        """Delete the chunks with these ids (orphans ``ods kb verify --repair`` found), ``per_call`` at once."""
        self._ensure()
        if ids:
            self._discard_snapshot()
        for start in range(0, len(ids), per_call):
            part = ids[start : start + per_call]
            self._delete(f"delete {len(part)} chunk(s) by id from", build_filter({"id": list(part)}))

    def count(self, conditions: Mapping[str, FilterValue] | None = None) -> int:
        """Chunks matching ``conditions`` (all by default), read with Strong consistency."""
        self._ensure()
        expression = build_filter(conditions)
        result = self._retrying(
            "count chunks in",
            lambda: self._client.query(
                self.collection,
                filter=expression,
                output_fields=["count(*)"],
                consistency_level="Strong",
                timeout=self._timeout_s,
            ),
        )
        return int(result[0]["count(*)"])

    def search(
        self,
        *,
        vector: Sequence[float] | NDArray[np.float32] | None = None,
        text: str | None = None,
        mode: SearchMode = "hybrid",
        k: int = 10,
        conditions: Mapping[str, FilterValue] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best chunks: by the query ``vector`` (dense), by ``text`` (BM25), or both fused by RRF."""
        from pymilvus import AnnSearchRequest, RRFRanker

        dense = self._query_vector(vector, text, mode, k)
        expression = build_filter(conditions)
        if mode == "bm25" and (found := self._snapshot_bm25(str(text), k, conditions)) is not None:
            return found
        snapshot = self._valid_snapshot() if mode in ("dense", "hybrid") else None
        # Each side of a hybrid search fetches more than k so fusion has candidates ranked by the other.
        depth = max(k * 4, 20)
        if snapshot is not None:
            query = np.asarray(dense, dtype=np.float32)
            if mode == "dense":
                return [snapshot_hit(row, score) for row, score in snapshot.search(query, k, conditions)]
            dense_hits = [
                snapshot_hit(row, score) for row, score in snapshot.search(query, depth, conditions)
            ]
            bm25_hits = self._snapshot_bm25(str(text), depth, conditions, dense=snapshot)
            if bm25_hits is None:
                bm25_hits = self.search(text=text, mode="bm25", k=depth, conditions=conditions)
            return self._fuse(dense_hits, bm25_hits, k)

        def run() -> Any:
            if mode == "hybrid":
                requests = [
                    AnnSearchRequest(
                        data=[dense],
                        anns_field="dense",
                        param=dense_search_params(depth),
                        limit=depth,
                        expr=expression,
                    ),
                    AnnSearchRequest(
                        data=[text], anns_field="sparse", param={}, limit=depth, expr=expression
                    ),
                ]
                return self._client.hybrid_search(
                    self.collection,
                    requests,
                    RRFRanker(RRF_K),
                    limit=k,
                    output_fields=_OUTPUT_FIELDS,
                    consistency_level="Strong",
                    timeout=self._timeout_s,
                )
            return self._search_one_side(dense, text, mode, k, expression, _OUTPUT_FIELDS)

        results = self._retrying("search", run)
        # Milvus Lite reports BM25 scores negated (a server reports them positive): rank order is right
        # either way, and the magnitude is the BM25 score.
        return [milvus_hit(hit, absolute=mode == "bm25") for hit in results[0]]

    def rank(
        self,
        *,
        vector: Sequence[float] | NDArray[np.float32] | None = None,
        text: str | None = None,
        mode: RankMode = "dense",
        k: int = 10,
        conditions: Mapping[str, FilterValue] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` best chunks' ``(id, score)`` by the query ``vector`` (dense) or ``text`` (BM25), best
        first, ranked as :meth:`search` ranks them but without reading their fields: a hybrid search ranks
        hundreds of candidates per side and keeps a few, whose fields :meth:`hits` reads."""
        dense = self._query_vector(vector, text, mode, k)
        snapshot = self._valid_snapshot()
        if snapshot is not None and mode == "dense":
            top, scores = snapshot.top(np.asarray(dense, dtype=np.float32), k, conditions)
            return list(zip(snapshot.ids(top), scores.tolist(), strict=True))
        sparse = self._valid_sparse_snapshot(snapshot) if mode == "bm25" else None
        if snapshot is not None and sparse is not None:
            ranked = sparse.search(str(text), k, snapshot.mask(conditions))
            ids = snapshot.ids([position for position, _ in ranked])
            return [(chunk_id, score) for chunk_id, (_, score) in zip(ids, ranked, strict=True)]
        expression = build_filter(conditions)
        results = self._retrying(
            "search", lambda: self._search_one_side(dense, text, mode, k, expression, output_fields=[])
        )
        # Milvus Lite reports BM25 scores negated, as in :meth:`search`.
        return [
            (str(hit["id"]), abs(float(hit["distance"])) if mode == "bm25" else float(hit["distance"]))
            for hit in results[0]
        ]

    def _query_vector(
        self, vector: Sequence[float] | NDArray[np.float32] | None, text: str | None, mode: SearchMode, k: int
    ) -> list[float]:
        """Check a query (``k``, and the vector or text its ``mode`` needs), then make sure the collection is
        ready; the query vector as Milvus takes it (empty without one)."""
        if k < 1:
            raise VectorIndexError(f"k must be at least 1, got {k}")
        if mode in ("dense", "hybrid") and vector is None:
            raise VectorIndexError(f"search mode {mode!r} needs a query vector")
        if mode in ("bm25", "hybrid") and not (text and text.strip()):
            raise VectorIndexError(f"search mode {mode!r} needs a non-empty query text")
        dense = self._vector(vector) if vector is not None else []
        self._ensure()
        return dense

    def _search_one_side(
        self,
        dense: list[float],
        text: str | None,
        mode: SearchMode,
        k: int,
        expression: str,
        output_fields: list[str],
    ) -> Any:
        """One Milvus search call, by the ``dense`` vector (mode ``dense``) or BM25 over ``text``, reading
        ``output_fields`` of each hit."""
        return self._client.search(
            self.collection,
            data=[dense] if mode == "dense" else [text],
            anns_field="dense" if mode == "dense" else "sparse",
            filter=expression,
            limit=k,
            search_params=dense_search_params(k) if mode == "dense" else {},
            output_fields=output_fields,
            consistency_level="Strong",
            timeout=self._timeout_s,
        )

    def hits(self, ranked: Sequence[tuple[str, float]]) -> list[SearchHit]:
        """The chunks of ``ranked`` (``(id, score)`` pairs, e.g. fused from :meth:`rank`'s lists) with their
        fields, in that order and with those scores; ids no longer in the collection are left out. One read:
        from the dense snapshot while it is current, else one query to Milvus."""
        if not ranked:
            return []
        snapshot = self._valid_snapshot()
        if snapshot is not None:
            found = [
                (position, score)
                for position, (_, score) in zip(
                    snapshot.positions(chunk_id for chunk_id, _ in ranked), ranked, strict=True
                )
                if position is not None
            ]
            rows = snapshot.rows([position for position, _ in found])
            return [snapshot_hit(row, score) for row, (_, score) in zip(rows, found, strict=True)]
        self._ensure()
        expression = build_filter({"id": [chunk_id for chunk_id, _ in ranked]})
        entities: list[dict[str, Any]] = self._retrying(
            "read chunks from",
            lambda: list(
                self._client.query(
                    self.collection,
                    filter=expression,
                    output_fields=_OUTPUT_FIELDS,
                    consistency_level="Strong",
                    timeout=self._timeout_s,
                )
            ),
        )
        by_id = {str(entity["id"]): entity for entity in entities}
        return [
            search_hit(chunk_id, entity, dict(entity.get("metadata") or {}), score)
            for chunk_id, score in ranked
            if (entity := by_id.get(chunk_id)) is not None
        ]

    def drop(self) -> None:
        """Drop this index's collection, only if it was created for this index's model and dimension."""

        def drop() -> None:
            if not self._client.has_collection(self.collection, timeout=self._timeout_s):
                return
            self._check_existing()
            self._discard_snapshot()
            self._client.drop_collection(self.collection, timeout=self._timeout_s)

        self._retrying("drop", drop)
        self._ready = False

    def dense_search_source(self) -> Literal["snapshot", "milvus"]:
        """Where a dense search would run now: this collection's valid dense snapshot, or Milvus."""
        return "snapshot" if self._valid_snapshot() is not None else "milvus"

    def bm25_search_source(self) -> Literal["snapshot", "milvus"]:
        """Where a BM25 search would run now: this collection's valid sparse snapshot, or Milvus."""
        return "snapshot" if self._valid_sparse_snapshot() is not None else "milvus"

    @property
    def analyzer(self) -> str:
        """The analyzer BM25 search applies now: on a Milvus server, the one the collection was created
        with ("standard" for collections made before analyzers were chosen); on a Milvus Lite file, this
        index's ``analyzer`` while the sparse snapshot is current, else Milvus Lite's "standard"."""
        if not self._server:
            return self._analyzer if self._valid_sparse_snapshot() is not None else "standard"
        if self._collection_analyzer is None:
            self._ensure()
            description = self._retrying(
                "describe",
                lambda: self._client.describe_collection(self.collection, timeout=self._timeout_s),
            )
            self._collection_analyzer = collection_analyzer(description)
        return self._collection_analyzer

    def dense_scores(
        self, vector: Sequence[float] | NDArray[np.float32], ids: Sequence[str]
    ) -> dict[str, float]:
        """The exact cosine similarity of ``vector`` to each chunk of ``ids`` (ids not in the collection
        are left out): from the dense snapshot while it is current, else from the vectors Milvus returns."""
        query = np.asarray(self._vector(vector), dtype=np.float32)
        if not ids:
            return {}
        snapshot = self._valid_snapshot()
        if snapshot is not None:
            return snapshot.cosines(query, ids)
        self._ensure()
        unit = query / (float(np.linalg.norm(query)) or 1.0)
        found: dict[str, float] = {}
        for start in range(0, len(ids), 500):
            expression = build_filter({"id": list(ids[start : start + 500])})
            rows: list[dict[str, Any]] = self._retrying(
                "read vectors from",
                partial(self._query_vectors, expression),
            )
            for row in rows:
                stored = np.asarray(row["dense"], dtype=np.float32)
                found[str(row["id"])] = float(stored @ unit / (float(np.linalg.norm(stored)) or 1.0))
        return found

    def _query_vectors(self, expression: str) -> list[dict[str, Any]]:
        return list(
            self._client.query(
                self.collection,
                filter=expression,
                output_fields=["dense"],
                consistency_level="Strong",
                timeout=self._timeout_s,
            )
        )

    def _snapshot_bm25(
        self,
        text: str,
        k: int,
        conditions: Mapping[str, FilterValue] | None,
        *,
        dense: DenseSnapshot | None = None,
    ) -> list[SearchHit] | None:
        """BM25 hits from the sparse snapshot, or None when there is no current one (``dense``: the
        current dense snapshot, when the caller has just checked it)."""
        dense = dense or self._valid_snapshot()
        sparse = self._valid_sparse_snapshot(dense)
        if dense is None or sparse is None:
            return None
        ranked = sparse.search(text, k, dense.mask(conditions))
        rows = dense.rows([position for position, _ in ranked])
        return [snapshot_hit(row, score) for row, (_, score) in zip(rows, ranked, strict=True)]

    def _valid_sparse_snapshot(self, dense: DenseSnapshot | None = None) -> SparseSnapshot | None:
        dense = dense or self._valid_snapshot()
        if dense is None:
            return None
        return current_sparse_snapshot(dense.path, dense.table.num_rows, self._analyzer)

    def _valid_snapshot(self) -> DenseSnapshot | None:
        """This collection's dense snapshot, if there is one and nothing was written since it was taken."""
        if self._lite_file is None:
            return None
        return current_snapshot(self._lite_file, self.collection, self.model_id)

    def _discard_snapshot(self) -> None:
        """Remove the dense snapshot before a write (a stale one would never be used, but is dead weight)."""
        if self._snapshot_path is not None:
            self._snapshot_path.unlink(missing_ok=True)
            SNAPSHOTS.forget(self._snapshot_path)
            discard_sparse_snapshot(self._snapshot_path)

    @staticmethod
    def _fuse(dense_hits: list[SearchHit], bm25_hits: list[SearchHit], k: int) -> list[SearchHit]:
        """Reciprocal-rank fusion of both sides, as Milvus's ``RRFRanker(60)`` would rank them."""
        by_id = {hit.id: hit for hit in (*bm25_hits, *dense_hits)}
        fused = reciprocal_rank_fusion(
            [[hit.id for hit in dense_hits], [hit.id for hit in bm25_hits]], k=RRF_K, limit=k
        )
        return [replace(by_id[chunk_id], score=score) for chunk_id, score in fused]

    def _ensure(self) -> None:
        if not self._ready:
            self.ensure_collection()

    def _check_existing(self) -> None:
        description = self._client.describe_collection(self.collection, timeout=self._timeout_s)
        check_chunk_collection(
            description, collection=self.collection, model_id=self.model_id, dimension=self.dimension
        )

    def _vector(self, vector: Sequence[float] | NDArray[np.float32]) -> list[float]:
        return checked_vector(
            vector, collection=self.collection, dimension=self.dimension, model_id=self.model_id
        )

    def _record(self, row: ChunkRow) -> dict[str, Any]:
        return chunk_record(row, collection=self.collection, dimension=self.dimension, model_id=self.model_id)

    def _retrying(self, action: str, operation: Callable[[], T]) -> T:
        """``operation()`` under :func:`~ods.adapters.milvus.client.retry_transient` for this collection;
        a collection found released is loaded again before the next attempt."""
        return retry_transient(
            action,
            operation,
            collection=self.collection,
            uri=self._uri,
            retry_s=self._retry_s,
            sleep=self._sleep,
            clock=self._clock,
            reload=lambda: self._client.load_collection(self.collection, timeout=self._timeout_s),
        )
