"""Exact dense search over a copy of a Milvus Lite collection, for the local profile.

Milvus Lite (3.2.x) is pure Python: for every search call it walks every stored row in Python loops
(a primary-key → newest-sequence map over all segments, then a per-row validity mask) before its ANN index
is asked anything. Over 100,000 chunks that made one dense search ~30x slower than an exact numpy search of
the same vectors (benchmarks/retrieval.py), whatever the index type.

So an ingest run ends by writing a *dense snapshot* of the collection beside the Lite file: one Arrow IPC
file holding every row's id, scalar fields, text and normalised vector. A dense search then memory-maps it
and ranks all rows exactly (a matrix-vector product and a partial sort): recall 1.0, a few milliseconds.

The snapshot is only used while it provably matches the collection. Milvus Lite records every write in its
write-ahead log and, once flushed, in the collection's manifest (its write sequence);
the snapshot stores that *fingerprint* and a search compares it with the files on disk (a small JSON read
and a directory listing). Any write since, by ods or any other client, changes it, and the search goes to
Milvus Lite as before until the next ingest writes a new snapshot. A Milvus server is never snapshotted:
its own search is fast.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from ods.adapters.milvus.open_files import OpenFileCache

logger = logging.getLogger(__name__)

SNAPSHOT_DIR_SUFFIX = ".ods-dense"
_FORMAT = "ods-dense-snapshot/1"
_FINGERPRINT_KEY = b"ods.fingerprint"
_FORMAT_KEY = b"ods.format"
_MODEL_KEY = b"ods.model"
SCALAR_FIELDS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "kb": pa.string(),
    "doc_uri": pa.string(),
    "doc_sha256": pa.string(),
    "chunk_index": pa.int64(),
    "text": pa.string(),
    "page": pa.int64(),
    "heading": pa.string(),
    "metadata": pa.string(),  # JSON text
}


def snapshot_path(lite_file: str | Path, collection: str) -> Path:
    """Where the dense snapshot of ``collection`` of Milvus Lite file ``lite_file`` lives."""
    lite = Path(lite_file)
    return lite.with_name(lite.name + SNAPSHOT_DIR_SUFFIX) / f"{collection}.arrow"


def lite_fingerprint(lite_file: str | Path, collection: str) -> str | None:
    """A string that changes with every write to the collection, or ``None`` if the layout is unknown.

    Made of the manifest's write sequence (every upsert and delete gets the next one; a flush records the
    highest), the write-ahead log's files and sizes (writes not flushed yet) and the identity of the
    collection's schema file (a dropped and re-created collection). Not of the data and delete files:
    Milvus Lite's background compaction merges those without changing a row (it did so while a 19,579-chunk
    snapshot was read, which was then discarded), and index builds touch neither.
    """
    folder = _collection_folder(lite_file, collection)
    manifest = _manifest(folder)
    try:
        wal = sorted((entry.name, entry.stat().st_size) for entry in os.scandir(folder / "wal"))
        schema = (folder / "schema.json").stat()
    except OSError:
        return None
    if manifest is None or "current_seq" not in manifest or "partitions" not in manifest:
        return None
    return json.dumps(
        {
            "seq": manifest["current_seq"],
            "wal_number": manifest.get("active_wal_number"),
            "wal": wal,
            "schema": [schema.st_ino, schema.st_mtime_ns],
        },
        sort_keys=True,
    )


def lite_dense_index_type(lite_file: str | Path, collection: str) -> str | None:
    """The index type of the collection's dense field ("FLAT", "HNSW", ...), read from its manifest;
    ``None`` when the collection or its dense index is not there."""
    manifest = _manifest(_collection_folder(lite_file, collection))
    try:
        return str(manifest["index_specs"]["dense"]["index_type"]) if manifest is not None else None
    except (KeyError, TypeError):
        return None


def _collection_folder(lite_file: str | Path, collection: str) -> Path:
    return Path(lite_file) / "collections" / collection


def _manifest(folder: Path) -> dict[str, Any] | None:
    """The collection's Milvus Lite manifest; None when it is missing or not a JSON object."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


_ROWS_BY_SLICE = 16
"""Up to this many rows are fetched one zero-copy slice at a time; more, with a ``take`` per block."""

ROWS_PER_BLOCK = 4_096
"""Rows per record batch of a snapshot file (~9 MB): the writer holds at most one block, whatever the
collection's size, and a search multiplies a handful of zero-copy blocks instead of one copied matrix."""


class SnapshotBuilder:
    """Writes a snapshot block by block to a temporary file beside ``path`` as rows arrive (dicts with the
    scalar fields and ``dense``); :meth:`commit` renames it into place, leaving the file unchanged otherwise.

    Use as a context manager: leaving it without a commit (an error, a collection that changed while it
    was read) removes the temporary file.
    """

    def __init__(
        self,
        path: Path,
        dimension: int,
        *,
        fingerprint: str,
        model_id: str,
        rows_per_block: int = ROWS_PER_BLOCK,
    ) -> None:
        self.path = path
        self.dimension = dimension
        self.rows = 0
        self._rows_per_block = rows_per_block
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._schema = pa.schema(
            [pa.field(name, kind) for name, kind in SCALAR_FIELDS.items()]
            + [pa.field("dense", pa.list_(pa.float32(), dimension))],
            metadata={_FORMAT_KEY: _FORMAT, _FINGERPRINT_KEY: fingerprint, _MODEL_KEY: model_id},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        self._sink = pa.OSFile(str(self._partial), "wb")
        self._writer = pa.ipc.new_file(self._sink, self._schema)
        self._open = True

    def __enter__(self) -> SnapshotBuilder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Take ``rows`` (converted to Arrow at once: a row's Python floats take ~4x its Arrow bytes)."""
        if not rows:
            return
        self._pending.append(self._record_batch(rows))
        self._pending_rows += len(rows)
        if self._pending_rows >= self._rows_per_block:
            self._write_pending()

    def commit(self) -> int:
        """Finish the file and move it to ``path`` (atomically); returns the rows written."""
        if self._pending or self.rows == 0:
            self._write_pending()  # an empty collection still gets its (empty) block
        self._close()
        self._partial.replace(self.path)
        return self.rows

    def abort(self) -> None:
        """Drop what was written (nothing happens after a commit)."""
        self._pending, self._pending_rows = [], 0
        self._close()
        self._partial.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._writer.close()
            finally:
                self._sink.close()

    def _write_pending(self) -> None:
        """Write the rows taken so far as one record batch (one block of the snapshot)."""
        block = pa.Table.from_batches(self._pending, schema=self._schema).combine_chunks()
        self._pending, self._pending_rows = [], 0
        for batch in block.to_batches(max_chunksize=max(block.num_rows, 1)) or [
            pa.RecordBatch.from_pylist([], schema=self._schema)
        ]:
            self._writer.write_batch(batch)
        self.rows += block.num_rows
        del block
        pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed blocks otherwise

    def _record_batch(self, rows: Sequence[Mapping[str, Any]]) -> pa.RecordBatch:
        vectors = np.asarray([row["dense"] for row in rows], dtype=np.float32).reshape(-1, self.dimension)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
        columns = [
            pa.array(
                [
                    json.dumps(row.get(name) or {}, sort_keys=True) if name == "metadata" else row.get(name)
                    for row in rows
                ],
                type=kind,
            )
            for name, kind in SCALAR_FIELDS.items()
        ]
        columns.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.dimension))
        return pa.RecordBatch.from_arrays(columns, schema=self._schema)


@dataclass(frozen=True)
class DenseSnapshot:
    """A memory-mapped snapshot: the table and its normalised vectors as (rows x dimension) matrices, one
    per record batch of the file, in table order (zero-copy views of the mapped file)."""

    path: Path
    fingerprint: str
    model_id: str
    table: pa.Table
    blocks: list[NDArray[np.float32]]

    @classmethod
    def open(cls, path: Path) -> DenseSnapshot | None:
        """The snapshot at ``path``, or ``None`` if there is none or it cannot be read."""
        try:
            source = pa.memory_map(str(path), "r")
            table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as error:
            if not isinstance(error, FileNotFoundError):
                logger.warning("ignoring unreadable dense snapshot %s: %s", path, error)
            return None
        metadata = table.schema.metadata or {}
        if metadata.get(_FORMAT_KEY) != _FORMAT.encode():
            return None
        dense = table.column("dense")
        dimension = dense.type.list_size
        blocks = [
            # A slice's ``values`` are the whole buffer: take this chunk's own rows.
            chunk.values.to_numpy(zero_copy_only=False)[
                chunk.offset * dimension : (chunk.offset + len(chunk)) * dimension
            ].reshape(-1, dimension)
            for chunk in dense.chunks
            if len(chunk)
        ]
        return cls(
            path=path,
            fingerprint=metadata[_FINGERPRINT_KEY].decode(),
            model_id=metadata.get(_MODEL_KEY, b"").decode(),
            table=table,
            blocks=blocks,
        )

    def search(
        self,
        vector: NDArray[np.float32],
        k: int,
        conditions: Mapping[str, str | int | Sequence[str] | Sequence[int]] | None = None,
    ) -> list[tuple[dict[str, Any], float]]:
        """The ``k`` rows of highest cosine similarity to ``vector`` among those matching ``conditions``
        (each field equal to the value, or to one of the values of a list), best first."""
        top, scores = self.top(vector, k, conditions)
        rows = self.rows(top.tolist())
        return [(row, float(score)) for row, score in zip(rows, scores.tolist(), strict=True)]

    def top(
        self,
        vector: NDArray[np.float32],
        k: int,
        conditions: Mapping[str, str | int | Sequence[str] | Sequence[int]] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """:meth:`search`'s ranking without reading the rows: their table positions and cosines, best first."""
        nothing = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        if self.table.num_rows == 0:
            return nothing
        query = np.asarray(vector, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(query))
        unit = query / norm if norm > 0 else query
        scores = self._similarities(unit)
        mask = self.mask(conditions)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
            k = min(k, int(mask.sum()))
        k = min(k, scores.shape[0])
        if k <= 0:
            return nothing
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.astype(np.int64, copy=False), scores[top]

    def _similarities(self, unit: NDArray[np.float32]) -> NDArray[np.float32]:
        """Every row's inner product with ``unit``, block by block into one array.

        numpy's own ``einsum`` loop, not BLAS (``block @ unit``): a matrix-vector product is bound by memory
        bandwidth, and OpenBLAS's threads only add synchronisation. At 100k rows on the busy 2-core machine
        (load ~4.5): 7-10 ms against 35-130 ms with OpenBLAS's 2 threads and ~20 ms with one
        (benchmarks/retrieval.py has the figures).
        """
        scores = np.empty(self.table.num_rows, dtype=np.float32)
        start = 0
        for block in self.blocks:
            end = start + block.shape[0]
            np.einsum("ij,j->i", block, unit, out=scores[start:end])
            start = end
        return scores

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The scalar fields of the rows at ``indices`` (table positions), in that order."""
        if len(indices) <= _ROWS_BY_SLICE:
            # Row by row: ``take`` on a table of several blocks copies every block first (~6 ms at 100k rows).
            scalars = self._scalars
            return [scalars.slice(index, 1).to_pylist()[0] for index in indices]
        # Many rows (candidates for fusion): one ``take`` per block they fall in, in position order, then
        # put back in the order asked (100 rows: ~1.5 ms, against up to ~10 ms a slice at a time).
        batches, starts = self._scalar_batches
        wanted = np.asarray(indices, dtype=np.int64)
        order = np.argsort(wanted, kind="stable")
        ordered = wanted[order]
        bounds = np.searchsorted(ordered, starts)
        fetched: list[dict[str, Any]] = []
        for block, batch in enumerate(batches):
            low, high = int(bounds[block]), int(bounds[block + 1])
            if low < high:
                local = pa.array(ordered[low:high] - starts[block])
                fetched.extend(batch.take(local).to_pylist())
        found: list[dict[str, Any]] = [{}] * len(fetched)
        for position, row in zip(order.tolist(), fetched, strict=True):
            found[position] = row
        return found

    @cached_property
    def _scalar_batches(self) -> tuple[list[pa.RecordBatch], NDArray[np.int64]]:
        batches = self._scalars.to_batches()
        return batches, np.cumsum([0, *(len(batch) for batch in batches)])

    @cached_property
    def _scalars(self) -> pa.Table:
        return self.table.drop_columns(["dense"])

    def ids(self, positions: Sequence[int] | NDArray[np.int64]) -> list[str]:
        """The chunk ids of the rows at ``positions`` (table positions), in that order."""
        return [str(chunk_id) for chunk_id in self._ids[np.asarray(positions, dtype=np.int64)].tolist()]

    def positions(self, ids: Iterable[str]) -> list[int | None]:
        """The table position of each chunk of ``ids`` (``None`` for one not held here)."""
        return [self._positions.get(chunk_id) for chunk_id in ids]

    @cached_property
    def _ids(self) -> NDArray[np.object_]:
        """Every row's chunk id, in table order (built on first use)."""
        return np.asarray(self.table.column("id").to_pylist(), dtype=object)

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Chunk id → table position (built on first use: ~30 ms at 100k rows)."""
        return {str(chunk_id): position for position, chunk_id in enumerate(self._ids.tolist())}

    @cached_property
    def _block_starts(self) -> NDArray[np.int64]:
        return np.cumsum([0, *(block.shape[0] for block in self.blocks)])

    def cosines(self, vector: NDArray[np.float32], ids: Iterable[str]) -> dict[str, float]:
        """The cosine similarity of ``vector`` to each of the chunks ``ids`` held here (others left out)."""
        query = np.asarray(vector, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(query))
        unit = query / norm if norm > 0 else query
        found: dict[str, float] = {}
        for chunk_id in ids:
            position = self._positions.get(chunk_id)
            if position is None:
                continue
            block = int(np.searchsorted(self._block_starts, position, side="right")) - 1
            row = self.blocks[block][position - int(self._block_starts[block])]
            found[chunk_id] = float(row @ unit)
        return found

    def mask(
        self, conditions: Mapping[str, str | int | Sequence[str] | Sequence[int]] | None
    ) -> NDArray[np.bool_] | None:
        """Which rows match ``conditions`` (each field equal to the value, or to one of the values of a
        list); None when there are none."""
        if not conditions:
            return None
        mask = np.ones(self.table.num_rows, dtype=bool)
        for name, value in conditions.items():
            values: Iterable[Any] = [value] if isinstance(value, str | int) else value
            column = self.table.column(name)
            matched = pc.is_in(column, value_set=pa.array(list(values), type=column.type))
            mask &= matched.fill_null(False).to_numpy(zero_copy_only=False)
        return mask


SNAPSHOTS: OpenFileCache[DenseSnapshot] = OpenFileCache(DenseSnapshot.open)


def current_snapshot(
    lite_file: str | Path, collection: str, model_id: str, *, fingerprint: str | None = None
) -> DenseSnapshot | None:
    """The dense snapshot of ``collection`` taken with ``model_id``, if nothing was written since it was
    taken (``fingerprint``: the collection's, when the caller has just read it)."""
    snapshot = SNAPSHOTS.get(snapshot_path(lite_file, collection))
    if snapshot is None or snapshot.model_id != model_id:
        return None
    if (fingerprint or lite_fingerprint(lite_file, collection)) != snapshot.fingerprint:
        return None
    return snapshot


def snapshot_due(
    lite_file: str | Path, collection: str, model_id: str, analyzer_name: str | None = None
) -> bool:
    """Whether ``collection`` exists in a layout this module knows and has no current dense snapshot, or
    (``analyzer_name`` given) no current sparse snapshot by that analyzer beside it: an ingest that writes
    nothing then still writes them (after a write by another client, or for a knowledge base snapshotted
    before sparse snapshots existed)."""
    from ods.adapters.milvus.sparse_snapshot import current_sparse_snapshot

    fingerprint = lite_fingerprint(lite_file, collection)
    if fingerprint is None:
        return False
    dense = current_snapshot(lite_file, collection, model_id, fingerprint=fingerprint)
    if dense is None:
        return True
    return analyzer_name is not None and (
        current_sparse_snapshot(dense.path, dense.table.num_rows, analyzer_name) is None
    )
