"""Benchmark of knowledge-base search: latency per mode and dense recall, against exact numpy search.

Builds a Milvus Lite collection of N chunks (default 100,000) through ``MilvusVectorIndex``, the adapter
ingestion writes with (same schema: dense COSINE index + BM25 sparse field, same upsert batches), then asks
Q questions (default 200) one per call with k=10, as `ods kb search` does, and measures:

- p50/p95 latency of dense, BM25 and hybrid (RRF) search;
- recall@10 of dense search against the exact top 10 by inner product (numpy, same vectors, same run);
- recall@10 of BM25 search from the sparse snapshot against an exact BM25 top 10 computed here term by
  term in Python (same ``english`` analyzer, Milvus's k1=1.2, b=0.75 and IDF);
- baselines: numpy brute-force top 10 for one query (``matrix @ q`` + ``argpartition``), per query, and
  Milvus Lite's own BM25 and hybrid search (before the snapshots exist), to which the snapshot searches are
  compared as ratios;
- the sparse snapshot's size on disk and in memory, and the time to build it.

The chunk texts are English-like prose from the ingest benchmark's vocabulary, so BM25 has words to match.
Embedding 100k texts with MiniLM takes ~12 min on 2 cores, so only B base texts (default 2,000) and the Q
questions are embedded with the packaged model; each chunk is the first half of one base text and the second
half of another, and its vector the same mix of their embeddings (weight 0.55-1 on the first) plus a little
Gaussian noise, renormalised. The vectors therefore lie where real embeddings of this prose lie, and no two
chunks share a vector.

Targets: recall@10 >= 0.95 for dense and BM25; p50 dense latency <= 2x numpy brute force per query;
p50 hybrid <= 50 ms at 100k chunks; p50 <= 20 ms for every mode at ~1,460 chunks (``--chunks 1460``).
The collection's dense index is FLAT by default, as ingestion creates it in a Milvus Lite file with dense
snapshots on (the snapshot serves dense search; Milvus Lite's own index only answers while the snapshot is
stale); ``--index-type HNSW`` builds it as on a Milvus server or with snapshots off, and ``--ef`` repeats
dense search with other HNSW ``ef`` values.

    .venv/bin/python benchmarks/retrieval.py --chunks 100000
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ingest import paragraph, sentence
from numpy.typing import NDArray

KB = "bench"
UPSERT_ROWS = 1_000  # what ingestion writes per upsert call (ods.stages.ingest.UPSERT_ROWS)
NOISE = 0.1  # norm of the Gaussian noise added to each mixed vector (the mix itself has norm ~0.8-1)


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    vectors: NDArray[np.float32]  # (chunks, dim), L2-normalised
    queries: list[str]
    query_vectors: NDArray[np.float32]  # (queries, dim), L2-normalised
    embed_seconds: float
    base_texts: int


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one kind of search, and the rows each call found."""

    seconds: list[float]
    found: list[list[int]]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.seconds, q))


# --- 1. corpus -----------------------------------------------------------------------------------------


def build_corpus(chunks: int, queries: int, base_texts: int, seed: int, embedder: Any) -> Corpus:
    """Chunk texts and vectors mixed from ``base_texts`` embedded paragraphs; questions embedded for real."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    generator = np.random.default_rng(seed)
    bases = [paragraph(rng, rng.randint(40, 90)) for _ in range(base_texts)]
    questions = [sentence(rng) for _ in range(queries)]
    started = time.perf_counter()
    base_vectors = embedder.embed(bases)
    query_vectors = embedder.embed(questions)
    embed_seconds = time.perf_counter() - started

    halves = [_split_sentences(text) for text in bases]
    first = generator.integers(0, base_texts, chunks)
    second = generator.integers(0, base_texts, chunks)
    weight = generator.uniform(0.55, 1.0, (chunks, 1)).astype(np.float32)
    noise = generator.standard_normal((chunks, base_vectors.shape[1])).astype(np.float32)
    noise *= NOISE / np.sqrt(base_vectors.shape[1])
    vectors = weight * base_vectors[first] + (1 - weight) * base_vectors[second] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"{halves[a][0]} {halves[b][1]}" for a, b in zip(first.tolist(), second.tolist(), strict=True)]
    return Corpus(texts, vectors, questions, query_vectors, embed_seconds, base_texts)


def _split_sentences(text: str) -> tuple[str, str]:
    """The text cut after the sentence nearest its middle."""
    middle = len(text) // 2
    cut = min(
        (i + 1 for i, char in enumerate(text) if char in ".?!" and i + 1 < len(text)),
        key=lambda i: abs(i - middle),
        default=middle,
    )
    return text[:cut].strip(), text[cut:].strip() or text[:cut].strip()


# --- 2. the index --------------------------------------------------------------------------------------


def build_index(corpus: Corpus, uri: str, model_id: str, index_type: str) -> tuple[Any, Any, float]:
    """Upsert every chunk through MilvusVectorIndex as ingestion does; return the index, its client, seconds.

    The collection is left as an ingest leaves it: rows past Milvus Lite's last automatic flush (128 MB of
    rows) sit in its in-memory table, which is searched by brute force, not by the ANN index.
    """
    from ods.adapters.milvus.client import open_milvus_client
    from ods.adapters.milvus.index import MilvusVectorIndex
    from ods.adapters.milvus.schema import ChunkRow, collection_name
    from ods.domain.chunking import chunk_id
    from ods.domain.hashing import sha256_bytes

    client = open_milvus_client(uri)
    index = MilvusVectorIndex(
        client,
        collection_name(KB, model_id),
        corpus.vectors.shape[1],
        model_id,
        index_type=index_type,  # type: ignore[arg-type]
        timeout_s=600,
        owns_client=False,
        lite_file=uri,  # so it can write the collection's dense snapshot, as ingestion's index does
    )
    index.ensure_collection()
    started = time.perf_counter()
    for start in range(0, len(corpus.texts), UPSERT_ROWS):
        rows = []
        for row in range(start, min(start + UPSERT_ROWS, len(corpus.texts))):
            uri_of_doc = f"file:///bench/area-{row % 16:02d}/doc-{row // 10:05d}.md"
            sha256 = sha256_bytes(uri_of_doc.encode())
            rows.append(
                ChunkRow(
                    id=chunk_id(KB, uri_of_doc, sha256, row % 10),
                    kb=KB,
                    doc_uri=uri_of_doc,
                    doc_sha256=sha256,
                    chunk_index=row % 10,
                    text=corpus.texts[row],
                    vector=corpus.vectors[row],
                    metadata={"row": row},
                )
            )
        index.upsert(rows)
        if start and start % 20_000 == 0:
            print(f"  {start:,} chunks written ({time.perf_counter() - started:.0f} s)", flush=True)
    return index, client, time.perf_counter() - started


def settle_index(client: Any, collection: str) -> float:
    """Flush the in-memory rows to a segment and reload, which builds every segment's index; seconds taken."""
    started = time.perf_counter()
    client.flush(collection)
    client.release_collection(collection)
    client.load_collection(collection, timeout=600)
    return time.perf_counter() - started


# --- 3. measurements -----------------------------------------------------------------------------------


def time_interleaved(calls: dict[str, list[Callable[[], list[int]]]]) -> dict[str, Timing]:
    """Run call i of every kind, then call i+1 of every kind, ...: all kinds see the same machine load.

    Each kind's first two calls run once untimed first (lazy loads, caches).
    """
    for kind in calls.values():
        for call in kind[:2]:
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    found: dict[str, list[list[int]]] = {name: [] for name in calls}
    for position in range(len(next(iter(calls.values())))):
        for name, kind in calls.items():
            started = time.perf_counter()
            rows = kind[position]()
            seconds[name].append(time.perf_counter() - started)
            found[name].append(rows)
    return {name: Timing(seconds[name], found[name]) for name in calls}


def numpy_top_k(matrix: NDArray[np.float32], vector: NDArray[np.float32], k: int) -> list[int]:
    """Exact top ``k`` rows by inner product (= cosine for unit vectors), best first."""
    scores = matrix @ vector
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])].tolist()


def exact_top_k(matrix: NDArray[np.float32], queries: NDArray[np.float32], k: int) -> list[list[int]]:
    """Ground truth for every query in one matrix product."""
    scores = queries @ matrix.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1).tolist()


def mean_recall(found: list[list[int]], exact: list[list[int]], k: int) -> float:
    from ods.domain.retrieval_metrics import mean_recall_at_k

    return mean_recall_at_k(found, exact, k)


def exact_bm25_top_k(texts: list[str], queries: list[str], k: int) -> list[list[int]]:
    """Ground truth for BM25, computed apart from the snapshot's code: term frequencies counted here, and
    each query scored term by term in float64 from them with the ``english`` analyzer and Milvus's BM25
    (k1=1.2, b=0.75, IDF log(1 + (N - df + 0.5) / (df + 0.5))); ties broken by row, as the snapshot does."""
    from ods.domain.text_analysis import analyze_english

    k1, b = 1.2, 0.75
    rows_of: dict[str, list[int]] = defaultdict(list)
    tfs_of: dict[str, list[int]] = defaultdict(list)
    lengths_list: list[int] = []
    for row, text in enumerate(texts):
        terms = analyze_english(text)
        lengths_list.append(len(terms))
        for term, tf in Counter(terms).items():
            rows_of[term].append(row)
            tfs_of[term].append(tf)
    lengths = np.asarray(lengths_list, dtype=np.float64)
    average = float(lengths.mean())
    found = []
    for query in queries:
        scores = np.zeros(len(texts), dtype=np.float64)
        for term, weight in Counter(analyze_english(query)).items():
            rows = np.asarray(rows_of.get(term, []), dtype=np.int64)
            tf = np.asarray(tfs_of.get(term, []), dtype=np.float64)
            idf = math.log(1 + (len(texts) - len(rows) + 0.5) / (len(rows) + 0.5))
            scores[rows] += weight * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[rows] / average))
        matched = np.flatnonzero(scores > 0)
        order = np.lexsort((matched, -scores[matched]))[:k]
        found.append(matched[order].tolist())
    return found


class _LookupEmbedder:
    """The questions' vectors, already embedded, handed to ``search_index`` as its embedder would: the
    benchmark times the search, not the model."""

    def __init__(self, model_id: str, questions: list[str], vectors: NDArray[np.float32]) -> None:
        self.model_id = model_id
        self._vectors = dict(zip(questions, vectors, strict=True))

    def embed(self, texts: list[str]) -> list[NDArray[np.float32]]:
        return [self._vectors[text] for text in texts]


def default_search_calls(
    index: Any, corpus: Corpus, model_id: str, k: int, *, before: bool = False
) -> list[Callable[[], list[int]]]:
    """Hybrid search as `ods kb search` and the API run it (``ods.stages.retrieve.search_index`` with the
    default ``SearchSettings``: its fusion and candidate count), one call per question. ``before``: the
    baseline, hybrid search as ``search_index`` ran it before it ranked ids first: full hits (text,
    metadata) for every candidate of both sides, fused by ``ods.stages.retrieve.fuse``."""
    from types import SimpleNamespace

    from ods.settings import SearchSettings
    from ods.stages.retrieve import fuse, search_index

    embedder = _LookupEmbedder(model_id, corpus.queries, corpus.query_vectors)
    record = SimpleNamespace(name=KB, embedding_model=model_id)
    search = SearchSettings()

    def call(question: str) -> list[int]:
        found = search_index(index, embedder, record, question, k=k)  # type: ignore[arg-type]
        return [int(hit.metadata["row"]) for hit in found.hits]

    def call_before(question: str) -> list[int]:
        vector = embedder.embed([question])[0]
        depth = max(k, search.candidates)
        dense = index.search(vector=vector, mode="dense", k=depth)
        words = index.search(text=question, mode="bm25", k=depth)
        return [int(hit.metadata["row"]) for hit in fuse(dense, words, search, k)]

    return [lambda q=q: (call_before if before else call)(q) for q in corpus.queries]


def sparse_memory_bytes(snapshot: Any) -> int:
    """Bytes a loaded sparse snapshot holds: its arrays and its term dictionary (keys and table)."""
    terms = sum(sys.getsizeof(term) + 28 for term in snapshot.terms) + sys.getsizeof(snapshot.terms)
    return int(snapshot.nbytes) + terms


def search_with_ef(client: Any, collection: str, vector: NDArray[np.float32], k: int, ef: int) -> list[int]:
    """Dense search as the adapter does it, but with an explicit HNSW ``ef`` (the adapter sends none)."""
    results = client.search(
        collection,
        data=[vector.tolist()],
        anns_field="dense",
        search_params={"metric_type": "COSINE", "params": {"ef": ef}},
        limit=k,
        output_fields=["doc_uri", "doc_sha256", "chunk_index", "text", "page", "heading", "metadata"],
        consistency_level="Strong",
    )
    return [int(hit["entity"]["metadata"]["row"]) for hit in results[0]]


# --- report --------------------------------------------------------------------------------------------


def print_report(arguments: argparse.Namespace, corpus: Corpus, figures: dict[str, Any]) -> None:
    k, numpy_p50 = arguments.k, figures["numpy_alone"].percentile(50)
    words = sum(text.count(" ") + 1 for text in corpus.texts) / len(corpus.texts)
    print(
        f"\ninput: {len(corpus.texts):,} chunks x {corpus.vectors.shape[1]} dims ({words:.0f} words each), "
        f"{len(corpus.queries)} questions, k={k}, dense index {arguments.index_type}\n"
        f"  vectors: mixes of {corpus.base_texts:,} embedded base paragraphs + noise (the chunk texts are the "
        f"same mixes);\n  embedding the base paragraphs and questions took {corpus.embed_seconds:.1f} s\n"
        f"  upsert through MilvusVectorIndex {figures['insert_seconds']:.1f} s "
        f"({len(corpus.texts) / figures['insert_seconds']:,.0f} chunks/s); then flush + index build on "
        f"load {figures['settle_seconds']:.1f} s\n  rows below: after the flush unless marked\n"
    )
    print(f"{'search, one question per call':40} {'p50 ms':>8} {'p95 ms':>8} {'recall@' + str(k):>10}")
    rows: list[tuple[str, Timing, float | None]] = [
        ("baseline: numpy brute force, alone", figures["numpy_alone"], 1.0),
        ("numpy, interleaved (round 1)", figures["numpy"], 1.0),
        ("dense, as ingest leaves it (no flush)", *figures["unflushed"]),
        (
            f"dense, Milvus Lite {arguments.index_type} (no snapshot)",
            figures["dense_milvus"],
            figures["dense_milvus_recall"],
        ),
        ("bm25 (Milvus Lite)", figures["bm25"], None),
        ("hybrid, Milvus Lite RRF (no snapshot)", figures["hybrid_milvus"], None),
    ]
    rows += [
        (f"dense, HNSW ef={ef} (experiment)", timing, rec) for ef, (timing, rec) in figures["ef"].items()
    ]
    rows += [
        ("numpy, interleaved (round 2)", figures["numpy_again"], 1.0),
        ("dense (production: snapshot)", figures["dense"], figures["dense_recall"]),
        ("bm25 (production: sparse snapshot)", figures["bm25_snapshot"], figures["bm25_recall"]),
        ("hybrid (production: both snapshots)", figures["hybrid"], None),
        ("hybrid, search_index before (all hits)", figures["hybrid_default_before"], None),
        ("hybrid, default search_index (snapshots)", figures["hybrid_default"], None),
    ]
    for name, timing, recall in rows:
        shown = f"{recall:10.3f}" if recall is not None else f"{'':10}"
        print(f"{name:40} {timing.percentile(50) * 1e3:8.2f} {timing.percentile(95) * 1e3:8.2f} {shown}")
    batch = figures["batch_seconds"]
    print(
        f"{'dense, Milvus Lite, all in one call':40} {batch * 1e3 / len(corpus.queries):8.2f} {'':8} "
        f"{figures['batch_recall']:10.3f}   (per question)"
    )
    print(
        f"\ndense snapshot: {figures['snapshot_rows']:,} rows, {figures['snapshot_bytes'] / 1e6:.0f} MB, written "
        f"in {figures['snapshot_seconds']:.1f} s (flush + read through Milvus Lite); first search after it "
        f"(opens and maps the file) {figures['first_snapshot_search'] * 1e3:.0f} ms; hybrid top-{k} overlap "
        f"with Milvus Lite's own hybrid {figures['hybrid_overlap']:.3f}"
    )
    sparse = figures["sparse"]
    print(
        f"sparse snapshot: {sparse['terms']:,} terms, {sparse['pairs']:,} (term, chunk) weights, "
        f"{sparse['disk'] / 1e6:.1f} MB on disk, {sparse['ram'] / 1e6:.1f} MB in memory when loaded; built "
        f"(analysis + weights) in {sparse['build_seconds']:.1f} s, loaded in {sparse['load_seconds'] * 1e3:.0f} ms"
        f"\n  (hybrid overlap above: Milvus Lite's BM25 side is unstemmed with k1=1.5, the snapshot's stemmed "
        "with k1=1.2, so the lists differ by design)"
    )
    print()
    bm25_p50, hybrid_p50 = figures["bm25_snapshot"].percentile(50), figures["hybrid"].percentile(50)
    default_p50 = figures["hybrid_default"].percentile(50)
    before = figures["hybrid_default_before"]
    same = before.found == figures["hybrid_default"].found
    print(
        f"recall@{k} bm25 vs exact BM25       = {figures['bm25_recall']:.3f}    (target >= 0.95)\n"
        f"p50 bm25, sparse snapshot        = {bm25_p50 * 1e3:.2f} ms  "
        f"({figures['bm25'].percentile(50) / bm25_p50:.0f}x faster than Milvus Lite's BM25, "
        f"{figures['bm25'].percentile(50) * 1e3:.0f} ms)\n"
        f"p50 hybrid, both snapshots       = {hybrid_p50 * 1e3:.2f} ms  "
        f"({figures['hybrid_milvus'].percentile(50) / hybrid_p50:.0f}x faster than Milvus Lite's hybrid, "
        f"{figures['hybrid_milvus'].percentile(50) * 1e3:.0f} ms; target <= 50 ms at 100k chunks, "
        "<= 20 ms at ~1,460)\n"
        f"p50 hybrid, default search_index = {default_p50 * 1e3:.2f} ms  "
        f"({figures['hybrid_milvus'].percentile(50) / default_p50:.0f}x faster than Milvus Lite's hybrid; "
        "the fusion and candidates `ods kb search` uses, query embedding not included)\n"
        f"  before (full hits for every candidate): p50 {before.percentile(50) * 1e3:.2f} ms, p95 "
        f"{before.percentile(95) * 1e3:.2f} ms; now p95 {figures['hybrid_default'].percentile(95) * 1e3:.2f} ms; "
        f"{before.percentile(50) / default_p50:.1f}x faster at p50; same top-{k} for every question: "
        f"{'yes' if same else 'NO'}"
    )
    ratio = figures["dense"].percentile(50) / numpy_p50
    print(f"recall@{k} dense vs exact           = {figures['dense_recall']:.3f}    (target >= 0.95)")
    interleaved = figures["dense"].percentile(50) / figures["numpy_again"].percentile(50)
    print(
        f"p50 dense / numpy per query        = {ratio:.1f}x     (target <= 2x; {interleaved:.1f}x against "
        "numpy interleaved with it)"
    )
    print(f"numpy per-query time (p50, alone)  = {numpy_p50 * 1e3:.2f} ms")
    print(f"run time                           = {time.perf_counter() - figures['started']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the collection")
    parser.add_argument("--queries", type=int, default=200, help="questions, each searched once per mode")
    parser.add_argument(
        "--unflushed-queries",
        type=int,
        default=20,
        help="questions for dense search before the flush (slow: brute force in Python)",
    )
    parser.add_argument("--k", type=int, default=10, help="results per search")
    parser.add_argument("--base-texts", type=int, default=2_000, help="paragraphs embedded for real")
    parser.add_argument(
        "--index-type",
        choices=["HNSW", "FLAT"],
        default="FLAT",
        help="dense index of the collection (FLAT: as ingestion creates it in a Lite file with snapshots on)",
    )
    parser.add_argument(
        "--ef", default="", help="comma-separated HNSW ef values to try for dense search, e.g. 16,128,256"
    )
    parser.add_argument("--seed", type=int, default=20_260_101)
    arguments = parser.parse_args()
    figures: dict[str, Any] = {"started": time.perf_counter()}

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from ods.adapters.milvus.dense_snapshot import snapshot_path
    from ods.adapters.milvus.sparse_snapshot import SparseSnapshot, sparse_path
    from ods.factories import build_embedder
    from ods.settings import load_settings

    embedder = build_embedder(load_settings().embedding)
    embedder.embed(["load the model before anything is timed"])
    print(
        f"embedding {arguments.base_texts:,} base paragraphs and {arguments.queries} questions ...",
        flush=True,
    )
    corpus = build_corpus(arguments.chunks, arguments.queries, arguments.base_texts, arguments.seed, embedder)
    k, vectors = arguments.k, corpus.query_vectors
    exact = exact_top_k(corpus.vectors, vectors, k)
    # The baseline alone, before Milvus Lite's in-process server threads exist; again later, interleaved.
    figures["numpy_alone"] = time_interleaved(
        {"numpy": [lambda v=v: numpy_top_k(corpus.vectors, v, k) for v in vectors]}
    )["numpy"]
    workdir = Path(tempfile.mkdtemp(prefix="ods-bench-retrieval-"))
    print(f"writing {arguments.chunks:,} chunks to {workdir / 'milvus.db'} ...", flush=True)
    index, client, figures["insert_seconds"] = build_index(
        corpus, str(workdir / "milvus.db"), embedder.model_id, arguments.index_type
    )

    def rows_of(hits: list[Any]) -> list[int]:
        return [int(hit.metadata["row"]) for hit in hits]

    few = arguments.unflushed_queries
    print(f"searching the collection as the ingest left it ({few} questions) ...", flush=True)
    unflushed = time_interleaved(
        {"dense": [lambda v=v: rows_of(index.search(vector=v, mode="dense", k=k)) for v in vectors[:few]]}
    )
    figures["unflushed"] = (unflushed["dense"], mean_recall(unflushed["dense"].found, exact[:few], k))
    print("flushing and reloading (segment indexes built) ...", flush=True)
    figures["settle_seconds"] = settle_index(client, index.collection)
    print("searching with Milvus Lite alone (no dense snapshot yet) ...", flush=True)
    efs = [int(value) for value in arguments.ef.split(",") if value.strip()]
    calls: dict[str, list[Callable[[], list[int]]]] = {
        "numpy": [lambda v=v: numpy_top_k(corpus.vectors, v, k) for v in vectors],
        "dense_milvus": [lambda v=v: rows_of(index.search(vector=v, mode="dense", k=k)) for v in vectors],
        "bm25": [lambda q=q: rows_of(index.search(text=q, mode="bm25", k=k)) for q in corpus.queries],
        "hybrid_milvus": [
            lambda v=v, q=q: rows_of(index.search(vector=v, text=q, mode="hybrid", k=k))
            for v, q in zip(vectors, corpus.queries, strict=True)
        ],
    }
    for ef in efs:
        calls[f"ef={ef}"] = [
            lambda v=v, ef=ef: search_with_ef(client, index.collection, v, k, ef) for v in vectors
        ]
    figures.update(time_interleaved(calls))
    figures["dense_milvus_recall"] = mean_recall(figures["dense_milvus"].found, exact, k)
    figures["ef"] = {
        ef: (figures[f"ef={ef}"], mean_recall(figures[f"ef={ef}"].found, exact, k)) for ef in efs
    }

    print("writing the dense snapshot, as an ingest run ends ...", flush=True)
    started = time.perf_counter()
    figures["snapshot_rows"] = index.write_search_snapshot()
    figures["snapshot_seconds"] = time.perf_counter() - started
    assert index.dense_search_source() == "snapshot", "the snapshot was not taken"
    figures["snapshot_bytes"] = snapshot_path(workdir / "milvus.db", index.collection).stat().st_size
    started = time.perf_counter()
    index.search(vector=vectors[0], mode="dense", k=k)
    figures["first_snapshot_search"] = time.perf_counter() - started
    dense_file = snapshot_path(workdir / "milvus.db", index.collection)
    assert index.bm25_search_source() == "snapshot", "the sparse snapshot was not taken"
    started = time.perf_counter()
    loaded = SparseSnapshot.open(sparse_path(dense_file))
    load_seconds = time.perf_counter() - started
    assert loaded is not None
    started = time.perf_counter()
    SparseSnapshot.build(corpus.texts, analyzer_name="english", dense_identity=(0, 0, 0))
    figures["sparse"] = {
        "terms": len(loaded.terms),
        "pairs": int(loaded.weights.shape[0]),
        "disk": sparse_path(dense_file).stat().st_size,
        "ram": sparse_memory_bytes(loaded),
        "build_seconds": time.perf_counter() - started,
        "load_seconds": load_seconds,
    }
    del loaded
    print("computing the exact BM25 top 10 of every question ...", flush=True)
    exact_bm25 = exact_bm25_top_k(corpus.texts, corpus.queries, k)
    print("searching as production does now (dense and bm25 from the snapshots) ...", flush=True)
    figures.update(
        time_interleaved(
            {
                "numpy_again": [lambda v=v: numpy_top_k(corpus.vectors, v, k) for v in vectors],
                "dense": [lambda v=v: rows_of(index.search(vector=v, mode="dense", k=k)) for v in vectors],
                "bm25_snapshot": [
                    lambda q=q: rows_of(index.search(text=q, mode="bm25", k=k)) for q in corpus.queries
                ],
                "hybrid": [
                    lambda v=v, q=q: rows_of(index.search(vector=v, text=q, mode="hybrid", k=k))
                    for v, q in zip(vectors, corpus.queries, strict=True)
                ],
                "hybrid_default": default_search_calls(index, corpus, embedder.model_id, k),
                "hybrid_default_before": default_search_calls(
                    index, corpus, embedder.model_id, k, before=True
                ),
            }
        )
    )
    figures["dense_recall"] = mean_recall(figures["dense"].found, exact, k)
    figures["bm25_recall"] = mean_recall(figures["bm25_snapshot"].found, exact_bm25, k)
    hybrid_overlap = [
        len(set(ours) & set(theirs)) / k
        for ours, theirs in zip(figures["hybrid"].found, figures["hybrid_milvus"].found, strict=True)
    ]
    figures["hybrid_overlap"] = sum(hybrid_overlap) / len(hybrid_overlap)
    started = time.perf_counter()
    batch = client.search(
        index.collection,
        data=vectors.tolist(),
        anns_field="dense",
        limit=k,
        output_fields=["metadata"],
        consistency_level="Strong",
    )
    figures["batch_seconds"] = time.perf_counter() - started
    figures["batch_recall"] = mean_recall(
        [[int(hit["entity"]["metadata"]["row"]) for hit in hits] for hits in batch], exact, k
    )
    index.close()
    client.close()
    shutil.rmtree(workdir)  # ~360 MB at 100k chunks
    print_report(arguments, corpus, figures)


if __name__ == "__main__":
    main()
