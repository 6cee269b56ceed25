"""Exact dense search over a copy of a Milvus Lite collection, for the local profile.

Milvus Lite (3.2.x) is pure Python: for every search call it walks every stored row in Python loops
(a primary-key → newest-sequence map over all segments, then a per-row validity mask) before its ANN index
is asked anything. Over 100,000 chunks that made one dense search ~30x slower than an exact numpy search of
the same vectors (benchmarks/retrieval.py), whatever the index type.

So an ingest run ends by writing a *dense snapshot* of the collection beside the Lite file: one Arrow IPC
file holding every row's id, scalar fields, text and normalised vector. A dense search then memory-maps it
and ranks all rows exactly (a matrix-vector product and a partial sort): recall 1.0, a few milliseconds.

The snapshot is only used while it provably matches the collection. Milvus Lite records every write in its
write-ahead log and, once flushed, in the collection's manifest (write sequence, data and delete files);
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
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

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

    Made of the manifest's write sequence and data/delete files and the write-ahead log's files and
    sizes. Index builds (on load) change neither, so loading a collection keeps its snapshot valid.
    """
    folder = Path(lite_file) / "collections" / collection
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        wal = sorted((entry.name, entry.stat().st_size) for entry in os.scandir(folder / "wal"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or "current_seq" not in manifest or "partitions" not in manifest:
        return None
    partitions = {
        name: [sorted(files.get("data_files", [])), sorted(files.get("delta_files", []))]
        for name, files in sorted(manifest["partitions"].items())
    }
    return json.dumps({"seq": manifest["current_seq"], "partitions": partitions, "wal": wal}, sort_keys=True)


class SnapshotBuilder:
    """Collects rows (dicts with the scalar fields and ``dense``) batch by batch, without holding them."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._batches: list[pa.RecordBatch] = []

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        vectors = np.asarray([row["dense"] for row in rows], dtype=np.float32).reshape(-1, self.dimension)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
        columns = {
            name: pa.array(
                [
                    json.dumps(row.get(name) or {}, sort_keys=True) if name == "metadata" else row.get(name)
                    for row in rows
                ],
                type=kind,
            )
            for name, kind in SCALAR_FIELDS.items()
        }
        columns["dense"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.dimension)
        self._batches.append(pa.RecordBatch.from_pydict(columns))

    def write(self, path: Path, *, fingerprint: str, model_id: str) -> int:
        """Write the rows as one record batch to ``path`` atomically; returns the row count."""
        schema = pa.schema(
            [pa.field(name, kind) for name, kind in SCALAR_FIELDS.items()]
            + [pa.field("dense", pa.list_(pa.float32(), self.dimension))],
            metadata={_FORMAT_KEY: _FORMAT, _FINGERPRINT_KEY: fingerprint, _MODEL_KEY: model_id},
        )
        table = pa.Table.from_batches(self._batches, schema=schema).combine_chunks()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for batch in table.to_batches(max_chunksize=max(table.num_rows, 1)):
                    writer.write_batch(batch)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return int(table.num_rows)


@dataclass(frozen=True)
class DenseSnapshot:
    """A memory-mapped snapshot: the table and its normalised vectors as one (rows x dimension) matrix."""

    path: Path
    fingerprint: str
    model_id: str
    table: pa.Table
    vectors: NDArray[np.float32]

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
        if table.num_rows == 0:
            vectors = np.empty((0, dimension), dtype=np.float32)
        else:
            chunk = dense.chunk(0) if dense.num_chunks == 1 else pa.concat_arrays(dense.chunks)
            vectors = chunk.values.to_numpy(zero_copy_only=False).reshape(-1, dimension)
        return cls(
            path=path,
            fingerprint=metadata[_FINGERPRINT_KEY].decode(),
            model_id=metadata.get(_MODEL_KEY, b"").decode(),
            table=table,
            vectors=vectors,
        )

    def search(
        self,
        vector: NDArray[np.float32],
        k: int,
        conditions: Mapping[str, str | int | Sequence[str] | Sequence[int]] | None = None,
    ) -> list[tuple[dict[str, Any], float]]:
        """The ``k`` rows of highest cosine similarity to ``vector`` among those matching ``conditions``
        (each field equal to the value, or to one of the values of a list), best first."""
        if self.table.num_rows == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(query))
        scores = self.vectors @ (query / norm if norm > 0 else query)
        mask = self._mask(conditions)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
            k = min(k, int(mask.sum()))
        k = min(k, scores.shape[0])
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        rows = self.table.drop_columns(["dense"]).take(pa.array(top)).to_pylist()
        return [(row, float(scores[index])) for row, index in zip(rows, top, strict=True)]

    def _mask(
        self, conditions: Mapping[str, str | int | Sequence[str] | Sequence[int]] | None
    ) -> NDArray[np.bool_] | None:
        if not conditions:
            return None
        mask = np.ones(self.table.num_rows, dtype=bool)
        for name, value in conditions.items():
            values: Iterable[Any] = [value] if isinstance(value, str | int) else value
            column = self.table.column(name)
            matched = pc.is_in(column, value_set=pa.array(list(values), type=column.type))
            mask &= matched.fill_null(False).to_numpy(zero_copy_only=False)
        return mask


class SnapshotCache:
    """Open snapshots of this process, reopened when their file changes (keyed by path)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[tuple[int, int, int], DenseSnapshot]] = {}

    def get(self, path: Path) -> DenseSnapshot | None:
        try:
            stat = path.stat()
        except OSError:
            self.forget(path)
            return None
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._open.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
        snapshot = DenseSnapshot.open(path)
        with self._lock:
            if snapshot is None:
                self._open.pop(path, None)
            else:
                self._open[path] = (key, snapshot)
        return snapshot

    def forget(self, path: Path) -> None:
        with self._lock:
            self._open.pop(path, None)


SNAPSHOTS = SnapshotCache()
