"""Reciprocal-rank fusion, as Milvus's RRFRanker computes it."""

from __future__ import annotations

import pytest

from ods.domain.rank_fusion import reciprocal_rank_fusion


def test_items_ranked_by_both_lists_rise_to_the_top() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], k=60)

    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_limit_and_ties_keep_first_seen_order() -> None:
    fused = reciprocal_rank_fusion([["x", "y"], ["y", "x"]], limit=1)

    assert fused == [("x", pytest.approx(1 / 61 + 1 / 62))]


def test_empty_rankings_fuse_to_nothing_and_negative_k_is_refused() -> None:
    assert reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError, match="k must not be negative"):
        reciprocal_rank_fusion([["a"]], k=-1)
