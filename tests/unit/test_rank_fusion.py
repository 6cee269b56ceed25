"""Fusion of ranked lists: reciprocal-rank fusion (as Milvus's RRFRanker computes it) and convex combination."""

from __future__ import annotations

import pytest

from ods.domain.rank_fusion import convex_combination, reciprocal_rank_fusion


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


def test_weights_tilt_rrf_towards_one_list() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[3.0, 1.0])

    assert fused == [("a", pytest.approx(3 / 1 + 1 / 2)), ("b", pytest.approx(3 / 2 + 1 / 1))]


def test_a_weight_per_list_is_required() -> None:
    with pytest.raises(ValueError, match="one weight of 0 or more per list"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])


def test_convex_combination_rewards_a_lead_that_ranks_ignore() -> None:
    # "a" leads the first list by far, "b" the second by a hair: ranks tie them, scores do not.
    dense = [("a", 0.9), ("b", 0.3), ("c", 0.29)]
    words = [("b", 10.0), ("a", 9.9), ("c", 1.0)]

    assert [item for item, _ in reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "c"]])][:2] == ["a", "b"]
    fused = convex_combination([dense, words], normalisation="minmax")

    assert [item for item, _ in fused] == ["a", "b", "c"]
    assert fused[0][1] == pytest.approx(1.0 + 8.9 / 9.0)


def test_an_item_one_list_lacks_gets_that_lists_lowest_score() -> None:
    fused = convex_combination([[("a", 1.0), ("b", 0.0)], [("c", 5.0), ("a", 3.0)]], normalisation="minmax")

    assert dict(fused) == pytest.approx({"a": 1.0, "b": 0.0, "c": 1.0})


def test_zscore_puts_lists_of_any_scale_on_one() -> None:
    small = convex_combination([[("a", 0.2), ("b", 0.1)]], normalisation="zscore")
    large = convex_combination([[("a", 200.0), ("b", 100.0)]], normalisation="zscore")

    assert dict(small) == pytest.approx(dict(large)) == {"a": 1.0, "b": -1.0}


def test_convex_combination_scores_as_the_formula_written_out() -> None:
    """The vectorised fusion gives, to the bit, the weighted sum of each list's normalised score (a list's
    lowest where it lacks the item), in first-seen order among equals: a reference written term by term."""
    import math
    import random

    generator = random.Random(7)
    for normalisation in ("zscore", "minmax"):
        for _ in range(20):
            lists = [
                [
                    (f"c{generator.randrange(60)}", generator.choice([1.0, generator.gauss(0, 3)]))
                    for _ in range(40)
                ]
                for _ in range(generator.choice([1, 2, 3]))
            ]
            lists = [list(dict(pairs).items()) for pairs in lists]  # one score per item per list
            weights = [generator.uniform(0, 2) for _ in lists]
            normalised: list[dict[str, float]] = []
            for pairs in lists:
                values = [score for _, score in pairs]
                if normalisation == "minmax":
                    low, high = min(values), max(values)
                    scaled = [(v - low) / (high - low) if high > low else 1.0 for v in values]
                else:
                    mean = math.fsum(values) / len(values)
                    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
                    scaled = [(v - mean) / spread if spread > 0 else 0.0 for v in values]
                normalised.append(dict(zip([item for item, _ in pairs], scaled, strict=True)))
            order = list(dict.fromkeys(item for pairs in lists for item, _ in pairs))
            expected = [
                (
                    item,
                    sum(
                        w * found.get(item, min(found.values()))
                        for w, found in zip(weights, normalised, strict=True)
                    ),
                )
                for item in order
            ]
            expected.sort(key=lambda pair: -pair[1])

            fused = convex_combination(lists, weights=weights, normalisation=normalisation, limit=15)

            assert fused == expected[:15]
