"""Query handling for long questions on the dense side of hybrid search, chosen on CISI by cross-validation
and only then checked once on MEDLINE (the protocol of `benchmarks/adaptive_fusion.py` and
`benchmarks/feedback_fusion.py`, whose machinery this reuses).

CISI's questions are often several sentences, embedded today as one text. The rules embed each sentence of
a question of more than one sentence separately (a question of one sentence is searched as today) and
build the dense list from those vectors; the BM25 list is unchanged (its question is already a bag of
words) and both are fused by the default fusion (convex z-score, dense weight 0.5, ``--depth`` candidates
a side). The family, fixed before any figure was seen (6 rules, and the default):

- ``mean``: the dense list of the normalised mean of the sentence vectors;
- ``max``: each chunk's best cosine over the sentences (the list of the ``--depth`` best, by it);
- ``rrf``: each sentence's dense list of ``--depth`` chunks, summed by RRF (k 60; a chunk outside a
  sentence's list gets nothing from it), the ``--depth`` best by that sum, which is the score fused;
- each of the three ``+ whole``: the whole question's vector (today's) taken as one more sentence.

Sentences (:func:`split_sentences`, fixed with the family): the question is cut after ``.``, ``?`` or ``!``
followed by white space and a capital letter, digit, quote or bracket, except after a one-letter word or
an abbreviation holding a full stop (``U.S.``, ``e.g.``); a piece of fewer than three words is joined to
the one before it. Sentence vectors are the open embedder's, a question's sentences in one call (at most
8 texts, the ONNX Runtime path questions take), as a search would embed them.

Each query's two lists come from :func:`adaptive_fusion.fetch_lists` (``search_index``'s ids and scores),
the chunk vectors and whole-question vectors from :func:`feedback_fusion.read_vectors` (the dense
snapshot ``search_index`` ranks, the open embedder): the study itself is numpy.

``--collection cisi`` (the default): 5-fold cross-validation over CISI's queries (the folds of the other
two scripts). In each fold the rule with the best training nDCG@10 is scored on the held-out queries; then
the 76 held-out queries against the default's on the same queries, a sign test, every rule on all of
CISI and the rule chosen on all of it. Decision fixed beforehand: adopt only if the held-out figure beats
the default's by at least ``ADOPT_MARGIN``. ``--collection med`` scores the frozen rule (``FROZEN``,
written after the CISI run and not changed after) on MEDLINE beside the default and the references: run
it once, and only if adopted.

    .venv/bin/python benchmarks/query_handling.py --collection cisi
    .venv/bin/python benchmarks/query_handling.py --collection med
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import adaptive_fusion as adaptive  # noqa: E402
from benchmarks import feedback_fusion as feedback  # noqa: E402
from benchmarks import retrieval_quality as quality  # noqa: E402

COMBINATIONS = ("mean", "max", "rrf")
RRF_K = 60
MIN_SENTENCE_WORDS = 3
EMBED_BATCH = 8
DEFAULT = "default (whole question)"
ADOPT_MARGIN = 0.005
"""Adopt a rule only if its held-out CISI nDCG@10 beats the default's on the same queries by this much."""

FROZEN = "sentences, rrf + whole"
"""The rule chosen on all of CISI (set after the CISI run, before MEDLINE's; empty: none adopted)."""

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z0-9\"'(\[])")


@dataclass(frozen=True)
class Handling:
    """A rule: the sentences' vectors combined by ``combination``, with the whole question's or not."""

    combination: str
    whole: bool

    @property
    def name(self) -> str:
        return f"sentences, {self.combination}" + (" + whole" if self.whole else "")


def rules() -> dict[str, Handling | None]:
    grid: dict[str, Handling | None] = {DEFAULT: None}
    for combination in COMBINATIONS:
        for whole in (False, True):
            rule = Handling(combination, whole)
            grid[rule.name] = rule
    return grid


def split_sentences(question: str) -> list[str]:
    """The question's sentences (see the module's docstring); one piece when it has a single sentence."""
    pieces: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(question):
        last_word = question[start : end.start()].split()[-1]
        stem = last_word.rstrip(".?!")
        if last_word.endswith(".") and (len(stem) <= 1 or "." in stem):
            continue  # an initial or an abbreviation, not a sentence's end
        pieces.append(question[start : end.start()].strip())
        start = end.end()
    pieces.append(question[start:].strip())
    sentences: list[str] = []
    for piece in filter(None, pieces):
        if sentences and len(piece.split()) < MIN_SENTENCE_WORDS:
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def read_sentence_vectors(collection: quality.Collection, data: Path) -> dict[str, Any]:
    """Each judged query's sentence vectors (one row per sentence), from ``data/sentence-vectors.npz`` or
    embedded by the open knowledge base's embedder (then kept there)."""
    path = data / "sentence-vectors.npz"
    if not path.is_file():
        opened = quality.open_knowledge_base(collection.name)
        try:
            query_ids = sorted(collection.queries)
            rows, counts = [], []
            for query_id in query_ids:
                sentences = split_sentences(collection.queries[query_id])
                for start in range(0, len(sentences), EMBED_BATCH):
                    rows.extend(opened.embedder.embed(sentences[start : start + EMBED_BATCH]))
                counts.append(len(sentences))
        finally:
            opened.index.close()
        np.savez(
            path,
            query_ids=np.asarray(query_ids, dtype=str),
            counts=np.asarray(counts, dtype=np.int64),
            vectors=np.asarray(rows, dtype=np.float32),
        )
    stored = np.load(path)
    offsets = np.concatenate([[0], np.cumsum(stored["counts"])])
    return {
        query_id: stored["vectors"][offsets[place] : offsets[place + 1]]
        for place, query_id in enumerate(stored["query_ids"].tolist())
    }


def top_chunks(vectors: feedback.Vectors, scores: Any, depth: int) -> list[tuple[str, float]]:
    """The ``depth`` chunks of highest ``scores`` (one per snapshot row), best first, ties in snapshot
    order (as ``feedback_fusion.dense_list`` ranks)."""
    depth = min(depth, scores.shape[0])
    top = np.argpartition(-scores, depth - 1)[:depth] if depth < scores.shape[0] else np.arange(depth)
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(vectors.chunk_ids[place], float(scores[place])) for place in top.tolist()]


def sentence_dense_list(
    vectors: feedback.Vectors, sentences: Any, rule: Handling, depth: int
) -> list[tuple[str, float]]:
    """The dense list of ``rule`` for a question whose vectors (sentences, and the whole question if the
    rule takes it) are the rows of ``sentences``."""
    if rule.combination == "mean":
        return feedback.dense_list(vectors, feedback.unit(sentences.mean(axis=0)), depth)
    cosines = np.stack([np.einsum("ij,j->i", vectors.matrix, feedback.unit(row)) for row in sentences])
    if rule.combination == "max":
        return top_chunks(vectors, cosines.max(axis=0), depth)
    summed = np.zeros(cosines.shape[1], dtype=np.float64)
    for row in cosines:
        order = np.argsort(-row, kind="stable")[:depth]
        summed[order] += 1.0 / (RRF_K + np.arange(1, order.size + 1))
    return top_chunks(vectors, summed, depth)


def ranking(
    lists: adaptive.QueryLists,
    vectors: feedback.Vectors,
    positions: dict[str, int],
    question: Any,
    sentences: Any,
    rule: Handling | None,
    depth: int,
) -> list[str]:
    """A query's best documents (by their best chunk) under ``rule`` (None, or a question of one
    sentence: the default hybrid, from ``search_index``'s own lists)."""
    from ods.domain.retrieval_metrics import unique_in_order

    dense = [(chunk_id, score) for chunk_id, _, score in lists.dense]
    words = [(chunk_id, score) for chunk_id, _, score in lists.bm25]
    if rule is not None and len(sentences) > 1:
        rows = np.vstack([sentences, question[None, :]]) if rule.whole else sentences
        dense = sentence_dense_list(vectors, rows, rule, depth)
    fused = feedback.fused_chunks(dense, words)
    return unique_in_order(vectors.documents[positions[chunk_id]] for chunk_id in fused)[: quality.DEPTH]


def rankings_by_rule(
    queries: dict[str, adaptive.QueryLists],
    vectors: feedback.Vectors,
    sentences: dict[str, Any],
    depth: int,
    names: Sequence[str],
) -> dict[str, dict[str, list[str]]]:
    """Every query's documents under each rule of ``names``: {rule: {query id: document ids}}."""
    grid, positions = rules(), vectors.position()
    return {
        name: {
            query_id: ranking(
                lists, vectors, positions, vectors.queries[query_id], sentences[query_id], grid[name], depth
            )
            for query_id, lists in queries.items()
        }
        for name in names
    }


def per_query_ndcg(
    rankings: dict[str, dict[str, list[str]]], relevant: dict[str, set[str]]
) -> dict[str, dict[str, float]]:
    return {
        name: {
            query_id: quality.score({query_id: ranked}, {query_id: relevant[query_id]}).ndcg10
            for query_id, ranked in by_query.items()
        }
        for name, by_query in rankings.items()
    }


def cross_validate(
    table: dict[str, dict[str, float]],
    rankings: dict[str, dict[str, list[str]]],
    relevant: dict[str, set[str]],
) -> None:
    ranked = feedback.held_out_verdict(table, DEFAULT, ADOPT_MARGIN)
    print("rules on all of CISI, best first (nDCG@10, recall@100, MRR@10):")
    for name in ranked:
        scores = quality.score(rankings[name], relevant)
        print(f"  {scores.ndcg10:.4f}  {scores.recall100:.3f}  {scores.mrr10:.3f}  {name}")
    print(f"chosen on all of CISI: {ranked[0]!r} (frozen rule now: {FROZEN!r})")


def describe_sentences(collection: quality.Collection, sentences: dict[str, Any]) -> None:
    counts = [len(sentences[query_id]) for query_id in collection.queries]
    several = sum(count > 1 for count in counts)
    print(
        f"{collection.name}: {several} of {len(counts)} questions have more than one sentence "
        f"(at most {max(counts)}, {sum(counts)} sentences in all)"
    )


def check_frozen(
    collection: quality.Collection,
    queries: dict[str, adaptive.QueryLists],
    vectors: feedback.Vectors,
    sentences: dict[str, Any],
    data: Path,
    depth: int,
) -> None:
    if not FROZEN:
        raise SystemExit("no rule is frozen (FROZEN is empty): MEDLINE is not run")
    rankings = rankings_by_rule(queries, vectors, sentences, depth, [FROZEN, DEFAULT])
    print(f"{collection.name}: frozen rule {FROZEN!r} against the default and the references")
    for name in (FROZEN, DEFAULT):
        scores = quality.score(rankings[name], collection.relevant)
        print(f"  {scores.ndcg10:.4f}  {scores.recall100:.3f}  {scores.mrr10:.3f}  {name}")
    opened = quality.open_knowledge_base(collection.name)
    try:
        references = quality.reference_rankings(collection, opened.embedder, data)
    finally:
        opened.index.close()
    for name, ranked in references.items():
        print(f"  {quality.score(ranked, collection.relevant).ndcg10:.4f}  reference {name}")


def search_by_sentences(opened: quality.OpenKnowledgeBase, question: str, k: int) -> list[Any]:
    """The frozen rule as a search would run it (``rrf + whole`` only): the question and its sentences
    embedded in calls of at most 8 texts, one dense ``VectorIndex.rank`` per vector, their RRF sum as the
    dense list, fused with the BM25 list by ``fuse_ranked`` and read with ``VectorIndex.hits``; a question
    of one sentence goes to ``search_index`` unchanged."""
    from ods.stages.retrieve import fuse_ranked, search_index

    sentences = split_sentences(question)
    if len(sentences) == 1:
        return search_index(
            opened.index, opened.embedder, opened.record, question, k=k, search=opened.settings.search
        ).hits
    texts = [question, *sentences]
    rows = [
        row
        for start in range(0, len(texts), EMBED_BATCH)
        for row in opened.embedder.embed(texts[start : start + EMBED_BATCH])
    ]
    depth = max(k, opened.settings.search.candidates)
    summed: dict[str, float] = {}
    for row in rows:
        for place, (chunk_id, _) in enumerate(opened.index.rank(vector=row, mode="dense", k=depth), start=1):
            summed[chunk_id] = summed.get(chunk_id, 0.0) + 1.0 / (RRF_K + place)
    dense = sorted(summed.items(), key=lambda item: -item[1])[:depth]
    words = opened.index.rank(text=question, mode="bm25", k=depth)
    return opened.index.hits(fuse_ranked(dense, words, opened.settings.search, k))


def measure_latency(collection: quality.Collection, rounds: int) -> None:
    """The frozen rule's search path against ``search_index``'s hybrid default, both with the question's
    embedding, taking turns query by query, ``rounds`` times; and the path's nDCG@10 beside the study's."""
    import time

    from ods.domain.retrieval_metrics import unique_in_order
    from ods.stages.retrieve import search_index

    if rules().get(FROZEN) != Handling("rrf", whole=True):
        raise SystemExit(f"the search path is written for 'sentences, rrf + whole', not {FROZEN!r}")
    opened = quality.open_knowledge_base(collection.name)
    try:
        ranked = {
            query_id: unique_in_order(
                quality.doc_id_of(hit.doc_uri)
                for hit in search_by_sentences(opened, question, quality.CHUNK_DEPTH)
            )
            for query_id, question in collection.queries.items()
        }
        scores = quality.score(ranked, collection.relevant)
        print(f"the frozen rule as a search: nDCG@10 {scores.ndcg10:.4f}, recall@100 {scores.recall100:.3f}")
        seconds: dict[str, list[float]] = {"default hybrid (search_index)": [], FROZEN: []}
        for _ in range(rounds):
            for _, question in sorted(collection.queries.items()):
                started = time.perf_counter()
                search_index(
                    opened.index,
                    opened.embedder,
                    opened.record,
                    question,
                    k=10,
                    search=opened.settings.search,
                )
                seconds["default hybrid (search_index)"].append(time.perf_counter() - started)
                started = time.perf_counter()
                search_by_sentences(opened, question, 10)
                seconds[FROZEN].append(time.perf_counter() - started)
    finally:
        opened.index.close()
    print(f"k=10, with the question's embedding, {rounds} rounds interleaved (p10 / p50 / p95):")
    for name, values in seconds.items():
        p10, p50, p95 = (quality.percentile(values, share) * 1000 for share in (0.1, 0.5, 0.95))
        print(f"  {p10:6.1f} / {p50:6.1f} / {p95:6.1f} ms  {name}")
    print(f"load average {os.getloadavg()[0]:.1f}")


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
        "--latency",
        type=int,
        metavar="ROUNDS",
        help="cisi: only time the frozen rule's search path against the default, ROUNDS times a query",
    )
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".ods" / "benchmarks" / "retrieval_quality")
    arguments = parser.parse_args(argv)
    data = (arguments.data / arguments.collection).resolve()
    quality.isolate(data)
    collection = quality.read_collection(arguments.corpora, arguments.collection)
    if arguments.collection != "cisi" and not FROZEN:
        raise SystemExit("no rule is frozen (FROZEN is empty): MEDLINE is not run")
    if arguments.latency:
        measure_latency(collection, arguments.latency)
        return
    queries = adaptive.fetch_lists(collection, data, arguments.depth, arguments.corpora)
    vectors = feedback.read_vectors(collection, data)
    feedback.check_dense_lists(queries, vectors, arguments.depth)
    sentences = read_sentence_vectors(collection, data)
    describe_sentences(collection, sentences)
    if arguments.collection == "cisi":
        names = list(rules())
        rankings = rankings_by_rule(queries, vectors, sentences, arguments.depth, names)
        cross_validate(per_query_ndcg(rankings, collection.relevant), rankings, collection.relevant)
    else:
        check_frozen(collection, queries, vectors, sentences, data, arguments.depth)


if __name__ == "__main__":
    main()
