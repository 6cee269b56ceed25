"""Query-adaptive hybrid fusion, chosen on CISI by cross-validation and only then checked once on MEDLINE.

Each judged query's dense and BM25 lists (``--depth`` chunks each, ids and scores, as ``search_index``
ranks them) are fetched once from the knowledge base `benchmarks/retrieval_quality.py` ingested (it is
ingested here if missing) and kept under its data folder, so the study itself is numpy only. Rules
studied, all convex z-score fusion (today's default) with a per-query dense weight:

- ``static w``: the same dense weight for every query (0.5 is today's default);
- ``confidence top k power p``: each side weighted by how far its best ``k`` hits stand out (mean
  z-score within its list) to the power ``p`` (:func:`confidence_weights`;
  power 0 is static 0.5);
- ``agreement slope s``: the dense weight 0.5 + s × (0.5 − the share of the two top-10s' documents in
  common): when the two sides disagree, the (on average stronger) dense side gets more say;
- ``length slope s``: the dense weight 0.5 + s × (log2 of the query's words − log2 10), clipped to 0.2-0.8.

``--collection cisi`` (the default): 5-fold cross-validation over CISI's queries (folds by query id,
interleaved). In each fold the rule with the best training nDCG@10 is chosen and scored on the held-out
queries; the folds' choices, their held-out figures and the static 0.5 default's on the same queries are
printed, then the rule chosen on all of CISI: the frozen rule. ``--collection med`` scores the frozen rule
(``FROZEN`` below, written after the CISI study and not changed after) on MEDLINE beside the default and the
references: run it once.

    .venv/bin/python benchmarks/adaptive_fusion.py --collection cisi
    .venv/bin/python benchmarks/adaptive_fusion.py --collection med
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import retrieval_quality as quality  # noqa: E402

FOLDS = 5


@dataclass(frozen=True)
class QueryLists:
    """One query's words and its two candidate lists as ``(chunk id, document id, score)``, best first."""

    words: int
    dense: list[tuple[str, str, float]]
    bm25: list[tuple[str, str, float]]


Rule = Callable[[QueryLists], float]
"""A rule gives a query's dense weight (0-1); BM25 gets the rest."""


def static(weight: float) -> Rule:
    return lambda _: weight


def confidence_weights(
    scored: Sequence[Sequence[float]],
    *,
    prior: Sequence[float] | None = None,
    top: int = 10,
    power: float = 1.0,
    floor: float = 0.05,
) -> list[float]:
    """Per-query weights of several score lists for :func:`convex_combination`, each list trusted by how
    far its best hits stand out: its confidence is the mean z-score (within the list) of its ``top`` best
    scores, at least ``floor``; a list's weight is ``prior × confidence ** power``, the weights scaled to
    sum to the priors' sum. ``power`` 0 gives the priors back; an empty or flat list gets ``floor``.

    A BM25 list whose first hits share the query's rare words scores them far above the rest; one that
    matched only common words is flat, and so is a dense list of near-equal cosines: the flatter side
    says less about which hit is best, so it gets less say in the fused order."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    factors = prior or [1.0] * len(scored)
    confidences = []
    for scores in scored:
        values = zscores(np.asarray(scores, dtype=np.float64))
        best = np.sort(values)[::-1][:top]
        confidences.append(max(floor, float(best.mean())) if best.size else floor)
    raw = [factor * confidence**power for factor, confidence in zip(factors, confidences, strict=True)]
    total = sum(raw)
    scale = sum(factors) / total if total > 0 else 0.0
    return [value * scale for value in raw]


def zscores(values: Any) -> Any:
    """Distances from the list's mean in (population) standard deviations, as convex fusion's zscore."""
    spread = values.std() if values.size else 0.0
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def confidence(top: int, power: float) -> Rule:
    def rule(lists: QueryLists) -> float:
        weights = confidence_weights(
            [[score for *_, score in lists.dense], [score for *_, score in lists.bm25]], top=top, power=power
        )
        return weights[0] / 2

    return rule


def agreement(slope: float) -> Rule:
    def rule(lists: QueryLists) -> float:
        dense = {doc for _, doc, _ in lists.dense[:10]}
        words = {doc for _, doc, _ in lists.bm25[:10]}
        shared = len(dense & words) / max(1, len(dense | words))
        return min(1.0, max(0.0, 0.5 + slope * (0.5 - shared)))

    return rule


def length(slope: float) -> Rule:
    def rule(lists: QueryLists) -> float:
        return min(0.8, max(0.2, 0.5 + slope * (math.log2(max(1, lists.words)) - math.log2(10))))

    return rule


def rules() -> dict[str, Rule]:
    grid: dict[str, Rule] = {f"static {w:g}": static(w) for w in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)}
    grid |= {
        f"confidence top {top} power {power:g}": confidence(top, power)
        for top in (1, 3, 10, 30)
        for power in (0.5, 1, 2, 3)
    }
    grid |= {f"agreement slope {s:g}": agreement(s) for s in (-0.4, -0.2, 0.2, 0.4, 0.6)}
    grid |= {f"length slope {s:g}": length(s) for s in (-0.1, -0.05, 0.05, 0.1)}
    return grid


FROZEN = "confidence top 3 power 1"
"""The rule chosen on all of CISI by the study above (set after the CISI run, before MEDLINE's)."""


def fused_documents(lists: QueryLists, dense_weight: float) -> list[str]:
    from ods.domain.rank_fusion import convex_combination
    from ods.domain.retrieval_metrics import unique_in_order

    doc_of = {chunk: doc for chunk, doc, _ in (*lists.dense, *lists.bm25)}
    fused = convex_combination(
        [
            [(chunk, score) for chunk, _, score in lists.dense],
            [(chunk, score) for chunk, _, score in lists.bm25],
        ],
        weights=[2 * dense_weight, 2 * (1 - dense_weight)],
        normalisation="zscore",
    )
    return unique_in_order(doc_of[chunk] for chunk, _ in fused)[: quality.DEPTH]


def ndcg(
    queries: dict[str, QueryLists], relevant: dict[str, set[str]], rule: Rule, ids: Sequence[str]
) -> float:
    rankings = {query_id: fused_documents(queries[query_id], rule(queries[query_id])) for query_id in ids}
    return quality.score(rankings, {query_id: relevant[query_id] for query_id in ids}).ndcg10


def fetch_lists(
    collection: quality.Collection, data: Path, depth: int, corpora: Path
) -> dict[str, QueryLists]:
    """Each query's lists, from ``data/lists-<depth>.json`` or fetched from the knowledge base (ingested
    first if the benchmark has not yet)."""
    path = data / f"lists-{depth}.json"
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        return {
            query_id: QueryLists(
                item["words"],
                [(c, d, s) for c, d, s in item["dense"]],
                [(c, d, s) for c, d, s in item["bm25"]],
            )
            for query_id, item in stored.items()
        }
    folder = data / "documents"
    quality.write_documents(collection, folder)
    quality.ingest(folder, collection.name)
    opened = quality.open_knowledge_base(collection.name)
    try:
        doc_of: dict[str, str] = {}
        found: dict[str, QueryLists] = {}
        for query_id, question in sorted(collection.queries.items()):
            vector = opened.embedder.embed([question])[0]
            dense = opened.index.rank(vector=vector, mode="dense", k=depth)
            words = opened.index.rank(text=question, mode="bm25", k=depth)
            unknown = [(chunk_id, 0.0) for chunk_id, _ in (*dense, *words) if chunk_id not in doc_of]
            doc_of |= {hit.id: quality.doc_id_of(hit.doc_uri) for hit in opened.index.hits(unknown)}
            found[query_id] = QueryLists(
                len(question.split()),
                [(chunk_id, doc_of[chunk_id], score) for chunk_id, score in dense],
                [(chunk_id, doc_of[chunk_id], score) for chunk_id, score in words],
            )
    finally:
        opened.index.close()
    path.write_text(
        json.dumps({q: {"words": v.words, "dense": v.dense, "bm25": v.bm25} for q, v in found.items()}),
        encoding="utf-8",
    )
    return found


def cross_validate(queries: dict[str, QueryLists], relevant: dict[str, set[str]]) -> None:
    grid = rules()
    ids = sorted(queries, key=int)
    folds = [ids[start::FOLDS] for start in range(FOLDS)]
    print(f"{FOLDS}-fold cross-validation over {len(ids)} queries, {len(grid)} rules:")
    held_out: dict[str, float] = {}
    default: dict[str, float] = {}
    for number, test in enumerate(folds, start=1):
        train = [query_id for query_id in ids if query_id not in set(test)]
        best = max(grid, key=lambda name: ndcg(queries, relevant, grid[name], train))
        for query_id in test:
            held_out[query_id] = ndcg(queries, relevant, grid[best], [query_id])
            default[query_id] = ndcg(queries, relevant, grid["static 0.5"], [query_id])
        print(
            f"  fold {number}: chose {best!r} (train {ndcg(queries, relevant, grid[best], train):.3f}); "
            f"held out {statistics.fmean(held_out[q] for q in test):.3f} "
            f"vs static 0.5 {statistics.fmean(default[q] for q in test):.3f}"
        )
    print(
        f"  all held-out queries: chosen rules {statistics.fmean(held_out.values()):.3f} "
        f"vs static 0.5 {statistics.fmean(default.values()):.3f}"
    )
    ranked = sorted(grid, key=lambda name: -ndcg(queries, relevant, grid[name], ids))
    print("rules on all of CISI, best first:")
    for name in ranked[:12]:
        print(f"  {ndcg(queries, relevant, grid[name], ids):.3f}  {name}")
    print(f"chosen on all of CISI: {ranked[0]!r} (frozen rule now: {FROZEN!r})")


def check_frozen(collection: quality.Collection, queries: dict[str, QueryLists], data: Path) -> None:
    grid = rules()
    ids = sorted(queries)
    print(f"{collection.name}: frozen rule {FROZEN!r} against the default and the references")
    for name in dict.fromkeys([FROZEN, "static 0.5"]):
        print(f"  {ndcg(queries, collection.relevant, grid[name], ids):.3f}  {name}")
    opened = quality.open_knowledge_base(collection.name)
    try:
        references = quality.reference_rankings(collection, opened.embedder, data)
    finally:
        opened.index.close()
    for name, ranked in references.items():
        print(f"  {quality.score(ranked, collection.relevant).ndcg10:.3f}  reference {name}")


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
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".ods" / "benchmarks" / "retrieval_quality")
    arguments = parser.parse_args(argv)
    data = (arguments.data / arguments.collection).resolve()
    quality.isolate(data)
    collection = quality.read_collection(arguments.corpora, arguments.collection)
    queries = fetch_lists(collection, data, arguments.depth, arguments.corpora)
    if arguments.collection == "cisi":
        cross_validate(queries, collection.relevant)
    else:
        check_frozen(collection, queries, data)


if __name__ == "__main__":
    main()
