"""Reciprocal-rank fusion of ranked lists (what Milvus's ``RRFRanker`` computes)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K = 60
T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]], *, k: int = RRF_K, limit: int | None = None
) -> list[tuple[T, float]]:
    """Items of several best-first rankings, ordered by the sum of ``1 / (k + rank)`` (rank from 1) over
    the rankings that hold them; ties keep the order in which items were first seen."""
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    fused = sorted(scores.items(), key=lambda pair: -pair[1])
    return fused if limit is None else fused[:limit]
