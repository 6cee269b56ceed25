"""Exact BM25 search beside the dense snapshot, for the local profile.

Milvus Lite's full-text search walks every row's terms in Python on each call (0.4-0.9 s over 100,000
chunks, benchmarks/retrieval.py), and its analyzers neither stem nor drop stop words. So after the dense
snapshot (``ods.adapters.milvus.dense_snapshot``) is written, its text column is analyzed
(``ods.domain.text_analysis``, the ``english`` analyzer by default) into a *sparse snapshot*: a term-major
(CSC) matrix of every row's BM25 weight per term, with Milvus's defaults k1=1.2, b=0.75 and its IDF
``log(1 + (N - df + 0.5) / (df + 0.5))``. A query adds up the weighted columns of its terms (each counted as
often as it occurs in the query, as Milvus weighs a query's terms) and partially sorts the rows that matched
at least one term: the exact BM25 ranking, in a few milliseconds.

Coherence follows the dense snapshot's: the sparse snapshot records the identity (inode, size, mtime) of
the dense snapshot file it was built from, whose rows it numbers. It is used only while that file is the
current dense snapshot (itself valid only while the collection's write fingerprint is unchanged) and was
built by the same analyzer name and version; otherwise BM25 search goes to Milvus, and the next ingest run
writes it again (``snapshot_due``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ods.adapters.milvus.open_files import FileIdentity, OpenFileCache, file_identity
from ods.domain.text_analysis import ANALYZER_VERSION, analyzer

logger = logging.getLogger(__name__)

BM25_K1 = 1.2
BM25_B = 0.75
_FORMAT = "ods-bm25-snapshot/1"
SUFFIX = ".bm25.npz"


def sparse_path(dense_path: Path) -> Path:
    """Where the sparse snapshot built from the dense snapshot at ``dense_path`` lives."""
    return dense_path.with_name(dense_path.name.removesuffix(".arrow") + SUFFIX)


@dataclass(frozen=True)
class SparseSnapshot:
    """BM25 weights of every row of one dense snapshot: column ``t`` of the term-major matrix holds
    ``rows[starts[t]:starts[t+1]]`` with weights ``weights[starts[t]:starts[t+1]]``."""

    analyzer: str
    analyzer_version: int
    dense_identity: FileIdentity
    rows: int
    terms: dict[str, int]
    starts: NDArray[np.int64]
    row_ids: NDArray[np.int32]
    weights: NDArray[np.float32]

    @property
    def nbytes(self) -> int:
        """Bytes of the posting arrays (the term dictionary not counted)."""
        return int(self.starts.nbytes + self.row_ids.nbytes + self.weights.nbytes)

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        analyzer_name: str,
        dense_identity: FileIdentity,
        k1: float = BM25_K1,
        b: float = BM25_B,
    ) -> SparseSnapshot:
        """Analyze ``texts`` (row order) and weigh every (term, row) pair by BM25."""
        analyze = analyzer(analyzer_name)
        terms: dict[str, int] = {}
        # Typed arrays, not lists: 4 bytes per (term, row) pair and field instead of a Python int each.
        term_of_pair, row_of_pair, count_of_pair, lengths = (array("i") for _ in range(4))
        for row, text in enumerate(texts):
            tokens = analyze(text or "")
            lengths.append(len(tokens))
            counts = Counter(tokens)
            term_of_pair.extend(terms.setdefault(term, len(terms)) for term in counts)
            row_of_pair.extend(itertools.repeat(row, len(counts)))
            count_of_pair.extend(counts.values())
        term_index = np.frombuffer(term_of_pair, dtype=np.int32).astype(np.int64)
        row_index = np.frombuffer(row_of_pair, dtype=np.int32).copy()
        tf = np.frombuffer(count_of_pair, dtype=np.int32).astype(np.float64)
        length = np.frombuffer(lengths, dtype=np.int32).astype(np.float64)
        del term_of_pair, row_of_pair, count_of_pair
        rows = len(lengths)
        average = float(length.mean()) if rows and length.sum() > 0 else 1.0
        df = np.bincount(term_index, minlength=len(terms)).astype(np.float64)
        idf = np.log(1.0 + (rows - df + 0.5) / (df + 0.5))
        weight = idf[term_index] * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * length[row_index] / average))
        order = np.argsort(term_index, kind="stable")  # term-major; rows ascending within a term
        starts = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(df.astype(np.int64), out=starts[1:])
        return cls(
            analyzer=analyzer_name,
            analyzer_version=ANALYZER_VERSION,
            dense_identity=dense_identity,
            rows=rows,
            terms=terms,
            starts=starts,
            row_ids=row_index[order],
            weights=weight[order].astype(np.float32),
        )

    def save(self, path: Path) -> None:
        """Write to ``path`` atomically (a temporary file beside it, then a rename)."""
        header = {
            "format": _FORMAT,
            "analyzer": self.analyzer,
            "analyzer_version": self.analyzer_version,
            "dense_identity": list(self.dense_identity),
            "rows": self.rows,
        }
        vocabulary = "\n".join(self.terms).encode("utf-8")  # terms are word characters: never a newline
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            with partial.open("wb") as sink:
                np.savez(
                    sink,
                    header=np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
                    vocabulary=np.frombuffer(vocabulary, dtype=np.uint8),
                    starts=self.starts,
                    row_ids=self.row_ids,
                    weights=self.weights,
                )
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    @classmethod
    def open(cls, path: Path) -> SparseSnapshot | None:
        """The sparse snapshot at ``path``, or ``None`` if there is none or it cannot be read."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(data["header"].tobytes().decode("utf-8"))
                if header.get("format") != _FORMAT:
                    return None
                vocabulary = data["vocabulary"].tobytes().decode("utf-8")
                starts, row_ids, weights = data["starts"], data["row_ids"], data["weights"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as error:
            logger.warning("ignoring unreadable sparse snapshot %s: %s", path, error)
            return None
        words = vocabulary.split("\n") if vocabulary else []
        return cls(
            analyzer=str(header["analyzer"]),
            analyzer_version=int(header["analyzer_version"]),
            dense_identity=(
                int(header["dense_identity"][0]),
                int(header["dense_identity"][1]),
                int(header["dense_identity"][2]),
            ),
            rows=int(header["rows"]),
            terms={word: index for index, word in enumerate(words)},
            starts=starts.astype(np.int64, copy=False),
            row_ids=row_ids.astype(np.int32, copy=False),
            weights=weights.astype(np.float32, copy=False),
        )

    def query_terms(self, text: str) -> dict[int, int]:
        """The known terms of the query ``text`` (term index → times it occurs in the query)."""
        counts = Counter(analyzer(self.analyzer)(text))
        return {self.terms[term]: count for term, count in counts.items() if term in self.terms}

    def scores(self, text: str) -> NDArray[np.float64]:
        """Every row's BM25 score for the query ``text`` (0 where no query term occurs)."""
        scores = np.zeros(self.rows, dtype=np.float64)
        for term, count in self.query_terms(text).items():
            start, end = int(self.starts[term]), int(self.starts[term + 1])
            scores[self.row_ids[start:end]] += count * self.weights[start:end]
        return scores

    def search(self, text: str, k: int, mask: NDArray[np.bool_] | None = None) -> list[tuple[int, float]]:
        """The ``k`` rows (snapshot row numbers) of highest BM25 score among those matching at least one
        query term (and ``mask``), best first; ties in row order."""
        scores = self.scores(text)
        matched = scores > 0
        if mask is not None:
            matched &= mask
        candidates = np.flatnonzero(matched)
        if candidates.size == 0 or k < 1:
            return []
        if candidates.size > k:
            kept = np.argpartition(-scores[candidates], k - 1)[:k]
            # Rows tied with the k-th score: keep the lowest row numbers, as a full stable sort would.
            threshold = scores[candidates[kept]].min()
            tied = candidates[scores[candidates] >= threshold]
            candidates = tied
        order = np.lexsort((candidates, -scores[candidates]))[:k]
        return [(int(candidates[i]), float(scores[candidates[i]])) for i in order]


SPARSE_SNAPSHOTS: OpenFileCache[SparseSnapshot] = OpenFileCache(SparseSnapshot.open)


def write_sparse_snapshot(
    dense_path: Path, texts: Iterable[str], analyzer_name: str
) -> SparseSnapshot | None:
    """Build and write the sparse snapshot of the dense snapshot at ``dense_path`` from its ``texts`` (its
    rows, in order); None when the dense file went away meanwhile."""
    identity = file_identity(dense_path)
    if identity is None:
        return None
    started = time.perf_counter()
    snapshot = SparseSnapshot.build(texts, analyzer_name=analyzer_name, dense_identity=identity)
    if file_identity(dense_path) != identity:
        return None
    path = sparse_path(dense_path)
    snapshot.save(path)
    SPARSE_SNAPSHOTS.forget(path)
    logger.info(
        "sparse snapshot of %s rows, %s terms written in %.1f s",
        snapshot.rows,
        len(snapshot.terms),
        time.perf_counter() - started,
    )
    return snapshot


def current_sparse_snapshot(dense_path: Path, rows: int, analyzer_name: str) -> SparseSnapshot | None:
    """The sparse snapshot built from the dense snapshot now at ``dense_path`` (of ``rows`` rows) with the
    current version of ``analyzer_name``, or None. The caller has checked that the dense snapshot is current."""
    snapshot = SPARSE_SNAPSHOTS.get(sparse_path(dense_path))
    if (
        snapshot is None
        or snapshot.analyzer != analyzer_name
        or snapshot.analyzer_version != ANALYZER_VERSION
        or snapshot.rows != rows
        or snapshot.dense_identity != file_identity(dense_path)
    ):
        return None
    return snapshot


def discard_sparse_snapshot(dense_path: Path) -> None:
    """Remove the sparse snapshot of ``dense_path`` (before a write; a stale one is never used anyway)."""
    path = sparse_path(dense_path)
    path.unlink(missing_ok=True)
    SPARSE_SNAPSHOTS.forget(path)
