"""Pseudo-relevance feedback on the dense side of hybrid search, chosen on CISI by cross-validation and only
then checked once on MEDLINE (the protocol of `benchmarks/adaptive_fusion.py`, whose machinery this reuses).

A rule (Rocchio): after the first hybrid ranking (today's default: convex z-score fusion, dense weight 0.5,
``--depth`` candidates a side), the query's vector becomes ``q' = normalise(q + beta × mean of the vectors
of the top m chunks)``; a second dense list of ``--depth`` chunks is ranked by ``q'`` over every chunk and
fused again, by the default fusion, with the same BM25 list. The family, fixed before any figure was seen:
``m`` in {3, 5, 10} × ``beta`` in {0.5, 1.0}, with the feedback chunks taken from the first *fused* list or
from the first *dense* list: 12 rules, and the default (no feedback).

Each query's two lists come from :func:`adaptive_fusion.fetch_lists` (ids and scores as ``search_index``
ranks them, kept under the data folder); the query vectors are the open embedder's (one question per call,
as ``search_index`` embeds), the chunk vectors are read from the knowledge base's dense snapshot, the matrix
``search_index``'s dense side ranks (``VectorIndex.rank`` on a Milvus Lite file). The study itself is numpy.
The dense list ranked here with ``q`` is checked against the stored one (same ids, same cosines).

``--collection cisi`` (the default): 5-fold cross-validation over CISI's queries (folds by query id,
interleaved, as adaptive_fusion.py). In each fold the rule with the best training nDCG@10 is scored on the
held-out queries; then every rule on all of CISI, the rule chosen on all of CISI and the decision rule
fixed beforehand: adopt only if the held-out figure beats the default's on the same queries by at least
``ADOPT_MARGIN``. ``--collection med`` scores the frozen rule (``FROZEN``, written after the CISI run and
not changed after) on MEDLINE beside the default and the references: run it once, and only if adopted.

    .venv/bin/python benchmarks/feedback_fusion.py --collection cisi
    .venv/bin/python benchmarks/feedback_fusion.py --collection med
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import adaptive_fusion as adaptive  # noqa: E402
from benchmarks import retrieval_quality as quality  # noqa: E402

FEEDBACK_CHUNKS = (3, 5, 10)
BETAS = (0.5, 1.0)
SOURCES = ("fused", "dense")
DEFAULT = "default (no feedback)"
ADOPT_MARGIN = 0.005
"""Adopt a rule only if its held-out CISI nDCG@10 beats the default's on the same queries by this much."""

FROZEN = ""
"""The rule chosen on all of CISI (set after the CISI run, before MEDLINE's; empty: none adopted)."""


@dataclass(frozen=True)
class Feedback:
    """A Rocchio rule: the top ``chunks`` of the first ``source`` list (``fused`` or ``dense``), ``beta``."""

    source: str
    chunks: int
    beta: float

    @property
    def name(self) -> str:
        return f"feedback from {self.source} top {self.chunks}, beta {self.beta:g}"


def rules(sources: Sequence[str] = SOURCES) -> dict[str, Feedback | None]:
    grid: dict[str, Feedback | None] = {DEFAULT: None}
    for source in sources:
        for chunks in FEEDBACK_CHUNKS:
            for beta in BETAS:
                rule = Feedback(source, chunks, beta)
                grid[rule.name] = rule
    return grid


@dataclass(frozen=True)
class Vectors:
    """The knowledge base's chunk vectors (unit rows, snapshot order) with their ids and documents, and
    each judged query's vector."""

    chunk_ids: list[str]
    documents: list[str]
    matrix: Any
    queries: dict[str, Any]

    def position(self) -> dict[str, int]:
        return {chunk_id: place for place, chunk_id in enumerate(self.chunk_ids)}


def read_vectors(collection: quality.Collection, data: Path) -> Vectors:
    """The vectors, from ``data/feedback-vectors.npz`` or read from the open knowledge base's dense
    snapshot and embedder (then kept there)."""
    path = data / "feedback-vectors.npz"
    if not path.is_file():
        from ods.adapters.milvus.dense_snapshot import current_snapshot
        from ods.factories import snapshot_lite_file

        opened = quality.open_knowledge_base(collection.name)
        try:
            lite_file = snapshot_lite_file(opened.settings)
            record = opened.record
            snapshot = (
                current_snapshot(lite_file, record.collection_name, record.embedding_model)
                if lite_file is not None
                else None
            )
            if snapshot is None:
                raise SystemExit("no current dense snapshot for this knowledge base: re-run the ingest")
            query_ids = sorted(collection.queries)
            query_vectors = [opened.embedder.embed([collection.queries[q]])[0] for q in query_ids]
            uris = snapshot.table.column("doc_uri").to_pylist()
            np.savez(
                path,
                chunk_ids=np.asarray(snapshot.ids(np.arange(snapshot.table.num_rows)), dtype=str),
                documents=np.asarray([quality.doc_id_of(uri) for uri in uris], dtype=str),
                matrix=np.concatenate(snapshot.blocks).astype(np.float32),
                query_ids=np.asarray(query_ids, dtype=str),
                query_vectors=np.asarray(query_vectors, dtype=np.float32),
            )
        finally:
            opened.index.close()
    stored = np.load(path)
    return Vectors(
        chunk_ids=stored["chunk_ids"].tolist(),
        documents=stored["documents"].tolist(),
        matrix=stored["matrix"],
        queries=dict(zip(stored["query_ids"].tolist(), stored["query_vectors"], strict=True)),
    )


def unit(vector: Any) -> Any:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def dense_list(vectors: Vectors, query: Any, depth: int) -> list[tuple[str, float]]:
    """The ``depth`` chunks of highest cosine to ``query``, best first, as the dense snapshot ranks them
    (``DenseSnapshot.top``: its ``einsum``, as a BLAS product rounds differently, and its order of
    chunks of equal cosine, which CISI's duplicated chunks have)."""
    scores = np.einsum("ij,j->i", vectors.matrix, unit(np.asarray(query, dtype=np.float32)))
    depth = min(depth, scores.shape[0])
    top = np.argpartition(-scores, depth - 1)[:depth] if depth < scores.shape[0] else np.arange(depth)
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(vectors.chunk_ids[place], float(scores[place])) for place in top.tolist()]


def fused_chunks(dense: Sequence[tuple[str, float]], words: Sequence[tuple[str, float]]) -> list[str]:
    """The default fusion's chunk ids, best first (convex z-score, dense weight 0.5: weights 1 and 1)."""
    from ods.domain.rank_fusion import convex_combination

    fused = convex_combination([list(dense), list(words)], weights=[1.0, 1.0], normalisation="zscore")
    return [chunk_id for chunk_id, _ in fused]


def ranking(
    lists: adaptive.QueryLists,
    vectors: Vectors,
    positions: dict[str, int],
    query: Any,
    rule: Feedback | None,
    depth: int,
) -> list[str]:
    """A query's best documents (by their best chunk) under ``rule`` (None: the default hybrid)."""
    from ods.domain.retrieval_metrics import unique_in_order

    dense = [(chunk_id, score) for chunk_id, _, score in lists.dense]
    words = [(chunk_id, score) for chunk_id, _, score in lists.bm25]
    first = fused_chunks(dense, words)
    if rule is not None:
        source = first if rule.source == "fused" else [chunk_id for chunk_id, _ in dense]
        chosen = [positions[chunk_id] for chunk_id in source[: rule.chunks]]
        centroid = vectors.matrix[chosen].mean(axis=0)
        revised = unit(unit(np.asarray(query, dtype=np.float32)) + rule.beta * centroid)
        first = fused_chunks(dense_list(vectors, revised, depth), words)
    return unique_in_order(vectors.documents[positions[chunk_id]] for chunk_id in first)[: quality.DEPTH]


def per_query_ndcg(
    queries: dict[str, adaptive.QueryLists],
    vectors: Vectors,
    relevant: dict[str, set[str]],
    depth: int,
    names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """nDCG@10 of every query under each rule of ``names``: {rule: {query id: nDCG@10}}."""
    grid, positions = rules(), vectors.position()
    table: dict[str, dict[str, float]] = {}
    for name in names:
        table[name] = {}
        for query_id, lists in queries.items():
            ranked = ranking(lists, vectors, positions, vectors.queries[query_id], grid[name], depth)
            table[name][query_id] = quality.score({query_id: ranked}, {query_id: relevant[query_id]}).ndcg10
    return table


def check_dense_lists(queries: dict[str, adaptive.QueryLists], vectors: Vectors, depth: int) -> None:
    """The dense list ranked here with the query's own vector against the one ``search_index`` ranked."""
    same, largest = 0, 0.0
    for query_id, lists in queries.items():
        mine = dense_list(vectors, vectors.queries[query_id], depth)
        stored = [(chunk_id, score) for chunk_id, _, score in lists.dense]
        same += [chunk_id for chunk_id, _ in mine] == [chunk_id for chunk_id, _ in stored]
        largest = max(largest, max(abs(a[1] - b[1]) for a, b in zip(mine, stored, strict=True)))
    print(
        f"dense lists ranked here vs search_index's: {same} of {len(queries)} identical in order, "
        f"largest cosine difference {largest:.1e}"
    )


def mean(table: dict[str, float], ids: Sequence[str]) -> float:
    return statistics.fmean(table[query_id] for query_id in ids)


def sign_test(better: int, worse: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven if either side were as likely."""
    total, fewer = better + worse, min(better, worse)
    tail = sum(math.comb(total, count) for count in range(fewer + 1)) / 2**total
    return min(1.0, 2 * tail)


def cross_validate(table: dict[str, dict[str, float]]) -> None:
    ranked = held_out_verdict(table, DEFAULT, ADOPT_MARGIN)
    print("rules on all of CISI, best first:")
    for name in ranked:
        print(f"  {mean(table[name], sorted(table[DEFAULT])):.4f}  {name}")
    print(f"chosen on all of CISI: {ranked[0]!r} (frozen rule now: {FROZEN!r})")


def held_out_verdict(table: dict[str, dict[str, float]], default: str, margin: float) -> list[str]:
    """Print the cross-validation over ``table`` (rule -> query id -> nDCG@10): per fold the rule best on
    the other folds, scored on the held-out queries against ``default``, the sign test and the decision
    fixed beforehand (adopt when the held-out gain is at least ``margin``). Returns the rules best first
    on all queries."""
    ids = sorted(table[default], key=int)
    folds = [ids[start :: adaptive.FOLDS] for start in range(adaptive.FOLDS)]
    print(f"{adaptive.FOLDS}-fold cross-validation over {len(ids)} queries, {len(table)} rules:")
    held_out: dict[str, float] = {}
    for number, test in enumerate(folds, start=1):
        train = [query_id for query_id in ids if query_id not in set(test)]
        best = max(table, key=lambda name: mean(table[name], train))
        held_out |= {query_id: table[best][query_id] for query_id in test}
        print(
            f"  fold {number} ({len(test)} queries): chose {best!r} (train {mean(table[best], train):.3f}, "
            f"default {mean(table[default], train):.3f}); held out {mean(table[best], test):.3f} "
            f"vs default {mean(table[default], test):.3f}"
        )
    gain = mean(held_out, ids) - mean(table[default], ids)
    better = sum(held_out[q] > table[default][q] + 1e-12 for q in ids)
    worse = sum(held_out[q] < table[default][q] - 1e-12 for q in ids)
    print(
        f"  all {len(ids)} held-out queries: chosen rules {mean(held_out, ids):.4f} vs default "
        f"{mean(table[default], ids):.4f} (gain {gain:+.4f}; {better} queries better, {worse} worse)"
    )
    print(
        f"  sign test over the {better + worse} queries that differ: two-sided p {sign_test(better, worse):.2f}"
    )
    verdict = "adopt" if gain >= margin else "do not adopt"
    print(f"  decision fixed beforehand (gain >= {margin}): {verdict}")
    return sorted(table, key=lambda name: -mean(table[name], ids))


def check_frozen(
    collection: quality.Collection,
    queries: dict[str, adaptive.QueryLists],
    vectors: Vectors,
    data: Path,
    depth: int,
) -> None:
    if not FROZEN:
        raise SystemExit("no rule is frozen (FROZEN is empty): MEDLINE is not run")
    table = per_query_ndcg(queries, vectors, collection.relevant, depth, [FROZEN, DEFAULT])
    ids = sorted(queries)
    print(f"{collection.name}: frozen rule {FROZEN!r} against the default and the references")
    for name in (FROZEN, DEFAULT):
        print(f"  {mean(table[name], ids):.4f}  {name}")
    opened = quality.open_knowledge_base(collection.name)
    try:
        references = quality.reference_rankings(collection, opened.embedder, data)
    finally:
        opened.index.close()
    for name, ranked in references.items():
        print(f"  {quality.score(ranked, collection.relevant).ndcg10:.4f}  reference {name}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--collection", choices=sorted(quality.FILES), default="cisi")
    parser.add_argument("--depth", type=int, default=400, help="chunks each side hands the fusion")
    parser.add_argument(
        "--corpora",
        type=Path,
        default=Path(os.environ.get("ODS_TEST_CORPORA") or REPO_ROOT.parent / "shared" / "corpora"),
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        choices=SOURCES,
        default=list(SOURCES),
        help="where the rules take their feedback chunks from (both: the family fixed for the decision)",
    )
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".ods" / "benchmarks" / "retrieval_quality")
    arguments = parser.parse_args(argv)
    data = (arguments.data / arguments.collection).resolve()
    quality.isolate(data)
    collection = quality.read_collection(arguments.corpora, arguments.collection)
    queries = adaptive.fetch_lists(collection, data, arguments.depth, arguments.corpora)
    vectors = read_vectors(collection, data)
    check_dense_lists(queries, vectors, arguments.depth)
    if arguments.collection == "cisi":
        names = list(rules(arguments.sources))
        table = per_query_ndcg(queries, vectors, collection.relevant, arguments.depth, names)
        cross_validate(table)
    else:
        check_frozen(collection, queries, vectors, data, arguments.depth)


if __name__ == "__main__":
    main()
