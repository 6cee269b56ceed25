"""Retrieval quality measures: recall@k, mean reciprocal rank and nDCG@k over labelled questions.

Pure functions over ranked ids (document URIs, file names or chunk ids), so the same code scores a
knowledge base against labelled questions and an approximate index against exact nearest neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ods.errors import OdsError

Item = TypeVar("Item", bound=Hashable)


class RetrievalMetricError(OdsError, ValueError):
    """A retrieval metric was asked for something it cannot measure (k < 1, no relevant items, ...)."""


@dataclass(frozen=True, slots=True)
class LabelledQuestion:
    """A question and the names of the documents that answer it (file names, e.g. ``returns.md``)."""

    question: str
    relevant: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.question.strip() or not self.relevant:
            raise RetrievalMetricError(
                f"a labelled question needs text and at least one relevant document, got {self!r}"
            )


def unique_in_order(items: Iterable[Item]) -> list[Item]:
    """``items`` without repeats, first occurrence kept: chunk hits ranked → documents ranked."""
    return list(dict.fromkeys(items))


def recall_at_k(ranked: Sequence[Item], relevant: Collection[Item], k: int) -> float:
    """Share of the ``relevant`` items found among the first ``k`` of ``ranked`` (0.0 to 1.0)."""
    _check(relevant, k)
    return len(set(ranked[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[Item], relevant: Collection[Item]) -> float:
    """1 / the 1-based position of the first relevant item in ``ranked``; 0.0 when none is there."""
    _check(relevant, 1)
    wanted = set(relevant)
    for position, item in enumerate(ranked, start=1):
        if item in wanted:
            return 1.0 / position
    return 0.0


def mean_recall_at_k(
    rankings: Sequence[Sequence[Item]], relevants: Sequence[Collection[Item]], k: int
) -> float:
    """Mean of :func:`recall_at_k` over queries (one ranking and one relevant set per query)."""
    _check_pairs(rankings, relevants)
    return sum(recall_at_k(r, rel, k) for r, rel in zip(rankings, relevants, strict=True)) / len(rankings)


def mean_reciprocal_rank(rankings: Sequence[Sequence[Item]], relevants: Sequence[Collection[Item]]) -> float:
    """MRR: mean of :func:`reciprocal_rank` over queries."""
    _check_pairs(rankings, relevants)
    return sum(reciprocal_rank(r, rel) for r, rel in zip(rankings, relevants, strict=True)) / len(rankings)


def _check(relevant: Collection[object], k: int) -> None:
    if k < 1:
        raise RetrievalMetricError(f"k must be at least 1, got {k}")
    if not relevant:
        raise RetrievalMetricError("no relevant items given: recall of an empty set is undefined")


def _check_pairs(rankings: Sequence[object], relevants: Sequence[object]) -> None:
    if len(rankings) != len(relevants):
        raise RetrievalMetricError(
            f"{len(rankings)} rankings but {len(relevants)} relevant sets: give one of each per query"
        )
    if not rankings:
        raise RetrievalMetricError("no queries given: a mean over zero queries is undefined")


def ndcg_at_k(ranked: Sequence[Item], relevant: Collection[Item], k: int) -> float:
    """Normalised discounted cumulative gain of the first ``k`` of ``ranked`` with binary relevance:
    the sum of ``1 / log2(position + 1)`` over the relevant items found, over the best such sum possible."""
    _check(relevant, k)
    wanted = set(relevant)
    gain = sum(1.0 / math.log2(position + 1) for position, item in enumerate(ranked[:k], 1) if item in wanted)
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(len(wanted), k) + 1))
    return gain / ideal
