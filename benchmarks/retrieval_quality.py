"""Benchmark of knowledge-base search quality on public test collections (CISI, MEDLINE), against references
computed in the same run.

The collection (``ODS_TEST_CORPORA`` or ``../shared/corpora``, ``ir/cisi`` or ``ir/med``) is written as one
text file per abstract (``title + ". " + abstract``) and ingested with `ods kb ingest` (the ingest-documents
flow, in a process of its own, as a user runs it). Then, in this process, with the catalog, the index and
the embedder opened once (as `ods serve` keeps them), every judged query is searched with
``ods.stages.retrieve.search_index``, the function the CLI and the API call, in each mode. A document's
rank is its best chunk's rank (150 chunks are asked for, to rank 100 documents). Printed per mode: nDCG@10,
recall@100, MRR@10, and the p50/p95 latency of one search of k=10, with the query's embedding and without
it (the query vectors computed beforehand; `--rounds` times each, interleaved query by query), beside three
references computed here from the same texts:

- dense: exact cosine with the same embedder over the same texts (one vector per document);
- BM25: bm25s (Lucene variant, k1 0.9, b 0.4), English stop words and the Snowball English stemmer
  (PyStemmer);
- RRF: reciprocal-rank fusion (k 60) of the two references' top-100 lists.

Dense and hybrid are timed a second time with the questions embedded by torch instead of the default ONNX
Runtime (``ODS_EMBEDDING__QUERY_RUNTIME``), the ratio printed; the cache of recent questions is off
(every question is searched several times).

The ingested knowledge base stays under ``--data`` (default ``.ods/benchmarks/retrieval_quality``), so a
second run finds every document unchanged and skips straight to searching.

    .venv/bin/python benchmarks/retrieval_quality.py --collection cisi
    .venv/bin/python benchmarks/retrieval_quality.py --collection med --modes hybrid
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = {"cisi": "CISI", "med": "MED"}
DEPTH = 100  # documents ranked per query: recall@100, and the references' lists fused by RRF
# Chunks asked for to rank DEPTH documents: a document's rank is its best chunk's, and CISI's 1,460
# abstracts make ~1,840 chunks, so 100 chunks hold only ~80 documents.
CHUNK_DEPTH = 150
REFERENCE_RRF_K = 60
_FIELD = re.compile(r"^\.([A-Z])(?:\s+(\S.*))?\s*$")


@dataclass(frozen=True)
class Collection:
    """A test collection: document texts and judged queries by id, the relevant documents of each query."""

    name: str
    documents: dict[str, str]
    queries: dict[str, str]
    relevant: dict[str, set[str]]


@dataclass(frozen=True)
class Scores:
    ndcg10: float
    recall100: float
    mrr10: float


# --- the collection -------------------------------------------------------------------------------------


def read_records(path: Path) -> dict[str, dict[str, str]]:
    """The records of a SMART-format file (``.I id`` then ``.T``/``.A``/``.W``/``.X``/``.B`` fields), each
    field's lines joined with single spaces."""
    records: dict[str, dict[str, list[str]]] = {}
    fields: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        marker = _FIELD.match(line)
        if marker and marker.group(1) == "I":
            fields = records.setdefault((marker.group(2) or "").strip(), {})
            lines = []
        elif marker and len(line.split()[0]) == 2:
            lines = fields.setdefault(marker.group(1), [])
            if marker.group(2):
                lines.append(marker.group(2))
        else:
            lines.append(line)
    return {
        record_id: {name: " ".join(" ".join(text).split()) for name, text in record.items()}
        for record_id, record in records.items()
    }


def read_collection(corpora: Path, name: str) -> Collection:
    """CISI or MEDLINE from ``corpora/ir/<name>``: every document, the queries that have judgements."""
    folder, stem = corpora / "ir" / name, FILES[name]
    documents = {}
    for doc_id, record in read_records(folder / f"{stem}.ALL").items():
        title, abstract = record.get("T", ""), record.get("W", "")
        documents[doc_id] = f"{title}. {abstract}" if title else abstract
    relevant: dict[str, set[str]] = {}
    for line in (folder / f"{stem}.REL").read_text(encoding="utf-8").splitlines():
        if parts := line.split():
            relevant.setdefault(parts[0], set()).add(parts[1])
    queries = {
        query_id: record["W"]
        for query_id, record in read_records(folder / f"{stem}.QRY").items()
        if query_id in relevant and record.get("W")
    }
    relevant = {query_id: docs for query_id, docs in relevant.items() if query_id in queries}
    return Collection(name, documents, queries, relevant)


def document_file(doc_id: str) -> str:
    return f"{int(doc_id):05d}.txt"


def doc_id_of(uri: str) -> str:
    """The collection's document id of an indexed file's URI (``.../00042.txt`` → ``42``)."""
    return str(int(uri.rsplit("/", 1)[-1].removesuffix(".txt")))


def write_documents(collection: Collection, folder: Path) -> None:
    """One UTF-8 text file per document; files already holding the same text are left alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, text in collection.documents.items():
        path = folder / document_file(doc_id)
        data = (text + "\n").encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)


# --- measures ---------------------------------------------------------------------------------------------


def score(rankings: dict[str, list[str]], relevant: dict[str, set[str]]) -> Scores:
    """Mean nDCG@10, recall@100 and MRR@10 over the judged queries (a missing ranking counts as empty)."""
    from ods.domain.retrieval_metrics import ndcg_at_k, recall_at_k, reciprocal_rank

    queries = sorted(relevant)
    ranked = [rankings.get(query_id, []) for query_id in queries]
    wanted = [relevant[query_id] for query_id in queries]
    return Scores(
        ndcg10=statistics.fmean(ndcg_at_k(r, w, 10) for r, w in zip(ranked, wanted, strict=True)),
        recall100=statistics.fmean(recall_at_k(r, w, DEPTH) for r, w in zip(ranked, wanted, strict=True)),
        mrr10=statistics.fmean(reciprocal_rank(r[:10], w) for r, w in zip(ranked, wanted, strict=True)),
    )


def reference_rankings(
    collection: Collection,
    embedder: Any,
    cache: Path | None = None,
    known: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """The three references' top-100 document ids per query: exact dense, stemmed BM25, and their RRF.
    ``cache``: a folder keeping the documents' embeddings between runs (by model and texts); ``known``:
    vectors of some texts by the same embedder (e.g. single-chunk documents' chunks), not embedded again."""
    import bm25s
    import Stemmer

    from ods.domain.rank_fusion import reciprocal_rank_fusion

    doc_ids, query_ids = list(collection.documents), sorted(collection.queries)
    texts = [collection.documents[doc_id] for doc_id in doc_ids]
    questions = [collection.queries[query_id] for query_id in query_ids]
    doc_vectors = embed_documents(texts, embedder, cache, known or {})
    query_vectors = np.asarray(embedder.embed(questions), dtype=np.float32)
    similarity = query_vectors @ doc_vectors.T
    dense = {
        query_id: [doc_ids[i] for i in np.argsort(-row, kind="stable")[:DEPTH]]
        for query_id, row in zip(query_ids, similarity, strict=True)
    }
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    found, _ = retriever.retrieve(
        bm25s.tokenize(questions, stopwords="en", stemmer=stemmer, show_progress=False),
        k=DEPTH,
        show_progress=False,
    )
    bm25 = {
        query_id: [doc_ids[i] for i in row] for query_id, row in zip(query_ids, found.tolist(), strict=True)
    }
    rrf = {
        query_id: [
            doc_id
            for doc_id, _ in reciprocal_rank_fusion([dense[query_id], bm25[query_id]], k=REFERENCE_RRF_K)
        ][:DEPTH]
        for query_id in query_ids
    }
    return {"dense": dense, "bm25": bm25, "rrf": rrf}


def embed_documents(
    texts: list[str], embedder: Any, cache: Path | None, known: Mapping[str, Any]
) -> np.ndarray:
    """The embeddings of ``texts``, read from ``cache`` when an earlier run kept them there, taken from
    ``known`` where it has them."""
    key = hashlib.sha256("\n".join([embedder.model_id, *texts]).encode("utf-8")).hexdigest()[:16]
    path = cache / f"reference-vectors-{key}.npy" if cache is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    missing = [text for text in dict.fromkeys(texts) if text not in known]
    found = {**known, **dict(zip(missing, embedder.embed(missing), strict=True))}
    vectors = np.asarray([found[text] for text in texts], dtype=np.float32)
    if path is not None:
        np.save(path, vectors)
    return vectors


# --- the knowledge base -----------------------------------------------------------------------------------


def ingest(folder: Path, kb: str) -> None:
    """`ods kb ingest FOLDER --kb KB` in a process of its own, with this process's environment."""
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "ods"), "kb", "ingest", str(folder), "--kb", kb], check=True
    )
    print(f"ingest: {time.perf_counter() - started:.1f} s")


@dataclass
class OpenKnowledgeBase:
    """A knowledge base's catalog record, index and the embedder, open for the whole run."""

    settings: Any
    record: Any
    index: Any
    embedder: Any

    def rankings(
        self, collection: Collection, mode: str, k: int, embedder: Any = None
    ) -> tuple[dict[str, list[str]], list[float]]:
        """Per query, the ids of the documents of the best ``k`` chunks, best first; and each call's seconds
        (``embedder``: another one than the open one, e.g. :class:`KnownVectors`)."""
        from ods.domain.retrieval_metrics import unique_in_order
        from ods.stages.retrieve import search_index

        rankings, seconds = {}, []
        for query_id, question in sorted(collection.queries.items()):
            started = time.perf_counter()
            retrieval = search_index(
                self.index,
                embedder or self.embedder,
                self.record,
                question,
                k=k,
                mode=mode,  # type: ignore[arg-type]
                search=self.settings.search,
            )
            seconds.append(time.perf_counter() - started)
            rankings[query_id] = unique_in_order(doc_id_of(hit.doc_uri) for hit in retrieval.hits)
        return rankings, seconds

    def interleaved_seconds(
        self, collection: Collection, mode: str, embedders: Mapping[str, Any], rounds: int
    ) -> dict[str, list[float]]:
        """Seconds of each k=10 search of every query with each embedder (None: the open one), the
        embedders taking turns query by query, ``rounds`` times: each sees the same machine load."""
        from ods.stages.retrieve import search_index

        seconds: dict[str, list[float]] = {name: [] for name in embedders}
        for _ in range(rounds):
            for _, question in sorted(collection.queries.items()):
                for name, embedder in embedders.items():
                    started = time.perf_counter()
                    search_index(
                        self.index,
                        embedder or self.embedder,
                        self.record,
                        question,
                        k=10,
                        mode=mode,  # type: ignore[arg-type]
                        search=self.settings.search,
                    )
                    seconds[name].append(time.perf_counter() - started)
        return seconds

    def hybrid_seconds_before(self, collection: Collection, k: int, embedder: Any = None) -> list[float]:
        """Each query's seconds of hybrid search as ``search_index`` ran it before it ranked ids first
        (the baseline): full hits (text, metadata) for every candidate of both sides, fused by ``fuse``."""
        from ods.stages.retrieve import fuse

        search, seconds = self.settings.search, []
        for _, question in sorted(collection.queries.items()):
            started = time.perf_counter()
            vector = (embedder or self.embedder).embed([question])[0]
            depth = max(k, search.candidates)
            dense = self.index.search(vector=vector, mode="dense", k=depth)
            words = self.index.search(text=question, mode="bm25", k=depth)
            cosines: dict[str, float] = {}
            if search.fusion == "convex" and search.exact_dense:
                seen = {hit.id for hit in dense}
                cosines = self.index.dense_scores(vector, [hit.id for hit in words if hit.id not in seen])
            fuse(dense, words, search, k, cosines)
            seconds.append(time.perf_counter() - started)
        return seconds


class KnownVectors:
    """The open embedder's vectors of the queries, computed before the clock starts: ``search_index`` with
    it times the search alone, without the query's embedding."""

    def __init__(self, embedder: Any, queries: Sequence[str]) -> None:
        self.model_id = embedder.model_id
        self._vectors = dict(zip(queries, embedder.embed(list(queries)), strict=True))

    def embed(self, texts: Sequence[str]) -> list[Any]:
        return [self._vectors[text] for text in texts]


def sweep(opened: OpenKnowledgeBase, collection: Collection, depth: int) -> None:
    """nDCG@10 of hybrid search under many fusion settings: each query's dense and BM25 lists are fetched
    once at ``depth`` (what ``search_index`` fetches with ``candidates=depth``), with the exact cosines of
    the BM25 hits, and fused by ``ods.stages.retrieve.fuse`` as each setting says."""
    from ods.domain.retrieval_metrics import unique_in_order
    from ods.settings import SearchSettings
    from ods.stages.retrieve import fuse

    lists = {}
    for query_id, question in sorted(collection.queries.items()):
        vector = opened.embedder.embed([question])[0]
        words = opened.index.search(text=question, mode="bm25", k=depth)
        lists[query_id] = (
            opened.index.search(vector=vector, mode="dense", k=depth),
            words,
            opened.index.dense_scores(vector, [hit.id for hit in words]),
        )
    candidates = [count for count in (50, 100, 200, 400, 800) if count <= depth]
    grid = [
        SearchSettings(fusion="rrf", rrf_k=rrf_k, dense_weight=weight, candidates=count)
        for rrf_k in (5, 10, 20, 60)
        for weight in (0.5, 0.6, 0.7)
        for count in candidates
    ] + [
        SearchSettings(
            fusion="convex", normalisation=how, dense_weight=weight, candidates=count, exact_dense=exact
        )  # type: ignore[arg-type]
        for how in ("minmax", "zscore")
        for weight in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65)
        for count in candidates
        for exact in (False, True)
    ]
    results = []
    for setting in grid:
        rankings = {}
        for query_id, (dense, words, cosines) in lists.items():
            kept = {hit.id for hit in dense[: setting.candidates]}
            missing = {
                hit.id: cosines[hit.id]
                for hit in words[: setting.candidates]
                if hit.id not in kept and hit.id in cosines
            }
            fused = fuse(
                dense[: setting.candidates],
                words[: setting.candidates],
                setting,
                DEPTH,
                missing if setting.exact_dense else None,
            )
            rankings[query_id] = unique_in_order(doc_id_of(hit.doc_uri) for hit in fused)
        results.append((score(rankings, collection.relevant), setting))
    results.sort(key=lambda pair: -pair[0].ndcg10)
    print(f"fusion sweep over {len(grid)} settings, best first (nDCG@10, recall@100, MRR@10):")
    for figures, setting in results[:30]:
        print(f"  {figures.ndcg10:.3f} {figures.recall100:.3f} {figures.mrr10:.3f}  {setting!r}")


def title_lever(opened: OpenKnowledgeBase, collection: Collection, corpora: Path) -> None:
    """nDCG@10 of each mode with every document's title put in front of its later chunks (the first holds
    it already), against the chunks as indexed: both ranked exactly here with ods's own engines (cosines of
    the dense snapshot's vectors, the later chunks re-embedded; ``SparseSnapshot`` BM25 with the configured
    analyzer; the configured convex fusion), so only the texts differ."""
    import pyarrow as pa
    from pyarrow import ipc

    from ods.adapters.milvus.dense_snapshot import snapshot_path
    from ods.adapters.milvus.sparse_snapshot import SparseSnapshot
    from ods.domain.rank_fusion import convex_combination
    from ods.domain.retrieval_metrics import unique_in_order

    search = opened.settings.search
    titles = {
        doc_id: record.get("T", "")
        for doc_id, record in read_records(
            corpora / "ir" / collection.name / f"{FILES[collection.name]}.ALL"
        ).items()
    }
    path = snapshot_path(opened.settings.milvus_uri, opened.record.collection_name)
    table = ipc.open_file(pa.memory_map(str(path))).read_all()
    documents = [doc_id_of(uri) for uri in table.column("doc_uri").to_pylist()]
    texts = table.column("text").to_pylist()
    later = [row for row, index in enumerate(table.column("chunk_index").to_pylist()) if index > 0]
    vectors = np.asarray(table.column("dense").to_pylist(), dtype=np.float32)
    titled_texts = list(texts)
    for row in later:
        titled_texts[row] = f"{titles[documents[row]]}. {texts[row]}"
    titled_vectors = vectors.copy()
    titled_vectors[later] = np.asarray(opened.embedder.embed([titled_texts[row] for row in later]))
    query_ids = sorted(collection.queries)
    questions = np.asarray(
        opened.embedder.embed([collection.queries[q] for q in query_ids]), dtype=np.float32
    )
    print(f"title lever: {len(later)} of {len(texts)} chunks are a document's later chunks")
    for label, chunk_texts, chunk_vectors in (
        ("as indexed", texts, vectors),
        ("title in front of later chunks", titled_texts, titled_vectors),
    ):
        words = SparseSnapshot.build(
            chunk_texts, analyzer_name=opened.index.analyzer, dense_identity=(0, 0, 0)
        )
        unit = chunk_vectors / np.linalg.norm(chunk_vectors, axis=1, keepdims=True)
        rankings: dict[str, dict[str, list[str]]] = {"dense": {}, "bm25": {}, "hybrid": {}}
        for query_id, vector in zip(query_ids, questions, strict=True):
            cosines = unit @ (vector / np.linalg.norm(vector))
            bm25 = words.scores(collection.queries[query_id])
            dense_rows = np.argsort(-cosines, kind="stable")[: search.candidates]
            bm25_rows = [
                row for row in np.argsort(-bm25, kind="stable")[: search.candidates] if bm25[row] > 0
            ]
            fused = convex_combination(
                [
                    [(row, float(cosines[row])) for row in dense_rows],
                    [(row, float(bm25[row])) for row in bm25_rows],
                ],
                weights=[2 * search.dense_weight, 2 * (1 - search.dense_weight)],
                normalisation=search.normalisation,
            )
            for mode, rows in (
                ("dense", dense_rows),
                ("bm25", bm25_rows),
                ("hybrid", [row for row, _ in fused]),
            ):
                rankings[mode][query_id] = unique_in_order(documents[row] for row in rows)
        figures = {mode: score(ranked, collection.relevant).ndcg10 for mode, ranked in rankings.items()}
        print(f"  {label:32} nDCG@10 " + "  ".join(f"{mode} {value:.3f}" for mode, value in figures.items()))


def open_knowledge_base(kb: str) -> OpenKnowledgeBase:
    from ods.factories import build_embedder, open_catalog, open_index
    from ods.settings import get_settings

    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
    embedder = build_embedder(settings.embedding)
    embedder.embed(["warm up the model"])
    return OpenKnowledgeBase(settings, record, open_index(settings, record), embedder)


# --- the run ----------------------------------------------------------------------------------------------


def isolate(data: Path) -> None:
    """Point ods and Prefect at the benchmark's own homes; must run before either is imported."""
    os.environ["ODS_HOME"] = str(data / "home")
    os.environ["PREFECT_HOME"] = str(data / "prefect")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Every query is searched several times: remembered vectors would time a dictionary look-up.
    os.environ["ODS_EMBEDDING__QUERY_CACHE"] = "0"
    os.environ.pop("PREFECT_API_URL", None)
    sys.path.insert(0, str(REPO_ROOT / "src"))
    sys.path.insert(0, str(REPO_ROOT))


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def milliseconds(seconds: Sequence[float]) -> str:
    return f"{percentile(seconds, 0.5) * 1000:6.1f} / {percentile(seconds, 0.95) * 1000:6.1f} ms"


def print_table(rows: Iterator[tuple[str, Scores, str]], baseline: Scores) -> None:
    print(
        f"{'system':30} {'nDCG@10':>8} {'x RRF':>6} {'R@100':>7} {'MRR@10':>7}  k=10 p50 / p95: search_index    without the query's embedding"
    )
    for name, figures, latency in rows:
        ratio = figures.ndcg10 / baseline.ndcg10 if baseline.ndcg10 else float("nan")
        print(
            f"{name:30} {figures.ndcg10:8.3f} {ratio:6.3f} {figures.recall100:7.3f} {figures.mrr10:7.3f}  {latency}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--collection", choices=sorted(FILES), default="cisi")
    parser.add_argument(
        "--modes", nargs="+", choices=["dense", "bm25", "hybrid"], default=["dense", "bm25", "hybrid"]
    )
    parser.add_argument(
        "--corpora",
        type=Path,
        default=Path(os.environ.get("ODS_TEST_CORPORA") or REPO_ROOT.parent / "shared" / "corpora"),
    )
    parser.add_argument(
        "--sweep",
        type=int,
        metavar="DEPTH",
        help="also fuse each query's dense and BM25 lists of DEPTH chunks under a grid of fusion settings",
    )
    parser.add_argument(
        "--title-lever",
        action="store_true",
        help="also rank with each document's title in front of its later chunks (convex fusion; CISI has titles)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="times every query is timed per mode and embedder (interleaved)"
    )
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".ods" / "benchmarks" / "retrieval_quality")
    arguments = parser.parse_args(argv)

    data = (arguments.data / arguments.collection).resolve()
    isolate(data)
    collection = read_collection(arguments.corpora, arguments.collection)
    print(
        f"{arguments.collection}: {len(collection.documents)} documents, {len(collection.queries)} judged queries"
    )
    folder = data / "documents"
    write_documents(collection, folder)
    ingest(folder, arguments.collection)

    opened = open_knowledge_base(arguments.collection)
    print(describe_search(opened.settings))
    try:
        measured: list[tuple[str, Scores, str]] = []
        known = KnownVectors(opened.embedder, list(collection.queries.values()))
        torch_embedder = torch_query_embedder(opened)
        runtime = getattr(opened.embedder, "query_runtime", "n/a")
        timing_notes = []
        for mode in arguments.modes:
            rankings, _ = opened.rankings(collection, mode, CHUNK_DEPTH)
            embedders = {"default": None, "known": known}
            if mode != "bm25" and torch_embedder is not None:  # the baseline: questions embedded by torch
                embedders["torch"] = torch_embedder
            timed = opened.interleaved_seconds(collection, mode, embedders, arguments.rounds)
            seconds, searching = timed["default"], timed["known"]
            latency = f"{milliseconds(seconds)}   {milliseconds(searching)}"
            measured.append((f"ods {mode}", score(rankings, collection.relevant), latency))
            if "torch" in timed:
                with_torch = timed["torch"]
                timing_notes.append(
                    f"ods {mode}: search_index p50 / p95 {milliseconds(seconds)} with the {runtime} query "
                    f"embedding, {milliseconds(with_torch)} with torch's; p50 ratio "
                    f"{percentile(seconds, 0.5) / percentile(with_torch, 0.5):.2f}"
                )
            if mode == "hybrid":  # the baseline: every candidate read in full before fusion
                before = opened.hybrid_seconds_before(collection, 10)
                searching_before = opened.hybrid_seconds_before(collection, 10, known)
                latency = f"{milliseconds(before)}   {milliseconds(searching_before)}"
                measured.append(("hybrid before (full hits)", score(rankings, collection.relevant), latency))
        if arguments.sweep:
            sweep(opened, collection, arguments.sweep)
        if arguments.title_lever:
            title_lever(opened, collection, arguments.corpora)
        references = reference_rankings(collection, opened.embedder, data)
    finally:
        opened.index.close()
    reference_scores = {name: score(ranked, collection.relevant) for name, ranked in references.items()}
    labels = {
        "dense": "reference dense (exact)",
        "bm25": "reference BM25 (bm25s stemmed)",
        "rrf": "reference RRF k=60",
    }
    rows = [(labels[name], figures, "") for name, figures in reference_scores.items()]
    print_table(iter([*rows, *measured]), reference_scores["rrf"])
    print(f"load average {os.getloadavg()[0]:.1f}")
    for note in timing_notes:
        print(note)


def torch_query_embedder(opened: OpenKnowledgeBase) -> Any:
    """The same model embedding questions with torch (what search_index used before ONNX Runtime), or None
    when the open embedder is not the in-process one."""
    from ods.adapters.models.embedder import SentenceTransformerEmbedder

    if not isinstance(opened.embedder, SentenceTransformerEmbedder):
        return None
    embedder = SentenceTransformerEmbedder(
        opened.embedder._model_dir, model_id=opened.embedder.model_id, query_runtime="torch"
    )
    embedder.embed(["warm up the model"])
    return embedder


def describe_search(settings: Any) -> str:
    """How the search is configured, for the printed record of a run."""
    search = getattr(settings, "search", None)
    return f"search settings: {search!r}" if search is not None else "search settings: built-in (RRF k=60)"


if __name__ == "__main__":
    main()
