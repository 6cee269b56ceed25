"""Fusion of ranked lists: reciprocal-rank fusion (what Milvus's ``RRFRanker`` computes), optionally
weighted, and a convex combination of normalised scores.

Hybrid search ranks each chunk by meaning (dense cosine) and by words (BM25) and fuses the two lists here.
RRF looks only at ranks; the convex combination also at how far ahead of the rest a hit scores on each side,
which is what separates a near-exact match from the tenth of a hundred alike.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

RRF_K = 60
T = TypeVar("T", bound=Hashable)
Normalisation = Literal["minmax", "zscore"]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]],
    *,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[tuple[T, float]]:
    """Items of several best-first rankings, ordered by the sum of ``weight / (k + rank)`` (rank from 1)
    over the rankings that hold them (every weight 1 unless ``weights`` gives one per ranking); ties keep
    the order in which items were first seen."""
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    factors = _weights(weights, len(rankings))
    scores: dict[T, float] = {}
    for ranking, weight in zip(rankings, factors, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    fused = sorted(scores.items(), key=lambda pair: -pair[1])
    return fused if limit is None else fused[:limit]


def convex_combination(
    scored: Sequence[Sequence[tuple[T, float]]],
    *,
    weights: Sequence[float] | None = None,
    normalisation: Normalisation = "minmax",
    limit: int | None = None,
) -> list[tuple[T, float]]:
    """Items of several lists of ``(item, score)`` (higher is better), ordered by the weighted sum of their
    scores normalised per list: ``minmax`` maps a list's lowest score to 0 and its highest to 1, ``zscore``
    subtracts the list's mean and divides by its standard deviation. An item a list lacks gets that list's
    lowest normalised score (it ranked below everything the list kept); ties keep first-seen order."""
    factors = _weights(weights, len(scored))
    order: dict[T, int] = {}  # item → its place, in first-seen order
    places = [
        np.fromiter((order.setdefault(item, len(order)) for item, _ in pairs), np.int64, len(pairs))
        for pairs in scored
    ]
    fused = np.zeros(len(order))
    for pairs, place, weight in zip(scored, places, factors, strict=True):
        values = _normalise(np.fromiter((score for _, score in pairs), np.float64, len(pairs)), normalisation)
        side = np.full(len(order), values.min() if values.size else 0.0)
        side[place] = values
        fused += weight * side
    items = list(order)
    best = np.argsort(-fused, kind="stable")[:limit]
    return [(items[place], score) for place, score in zip(best.tolist(), fused[best].tolist(), strict=True)]


def _normalise(values: NDArray[np.float64], normalisation: Normalisation) -> NDArray[np.float64]:
    if not values.size:
        return values
    if normalisation == "minmax":
        low, high = values.min(), values.max()
        return (values - low) / (high - low) if high > low else np.ones_like(values)
    # Exact sums (fsum), as the mean and spread were before this was vectorised: same scores to the bit.
    mean = math.fsum(values.tolist()) / values.size
    spread = math.sqrt(math.fsum(((values - mean) ** 2).tolist()) / values.size)  # population
    return (values - mean) / spread if spread > 0 else np.zeros_like(values)


def _weights(weights: Sequence[float] | None, lists: int) -> Sequence[float]:
    if weights is None:
        return [1.0] * lists
    if len(weights) != lists or any(weight < 0 for weight in weights):
        raise ValueError(f"give one weight of 0 or more per list ({lists}), got {list(weights)}")
    return weights
