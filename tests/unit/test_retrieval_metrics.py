"""Recall@k, MRR and nDCG@k: the figures the retrieval test and benchmark report."""

from __future__ import annotations

import math

import pytest

from ods.domain.retrieval_metrics import (
    LabelledQuestion,
    RetrievalMetricError,
    mean_recall_at_k,
    mean_reciprocal_rank,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    unique_in_order,
)


def test_recall_at_k_counts_relevant_items_within_the_first_k() -> None:
    ranked = ["a", "b", "c", "d"]

    assert recall_at_k(ranked, {"c"}, 3) == 1.0
    assert recall_at_k(ranked, {"c"}, 2) == 0.0
    assert recall_at_k(ranked, {"a", "d", "x"}, 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, {"a"}, 10) == 1.0  # fewer results than k is not an error


def test_recall_at_k_of_an_approximate_top_k_against_the_exact_one() -> None:
    exact = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    approximate = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]

    assert recall_at_k(approximate, exact, 10) == 0.8


def test_duplicates_in_a_ranking_do_not_count_twice() -> None:
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == 0.5
    assert unique_in_order(["a", "a", "b", "a", "c"]) == ["a", "b", "c"]


def test_reciprocal_rank_is_one_over_the_first_relevant_position() -> None:
    assert reciprocal_rank(["a", "b", "c"], {"a"}) == 1.0
    assert reciprocal_rank(["a", "b", "c"], {"c", "b"}) == 0.5
    assert reciprocal_rank(["a", "b", "c"], {"x"}) == 0.0


def test_means_average_over_queries() -> None:
    rankings = [["a", "b"], ["b", "a"], ["c", "d"]]
    relevants = [{"a"}, {"a"}, {"a"}]

    assert mean_recall_at_k(rankings, relevants, 2) == pytest.approx(2 / 3)
    assert mean_recall_at_k(rankings, relevants, 1) == pytest.approx(1 / 3)
    assert mean_reciprocal_rank(rankings, relevants) == pytest.approx((1 + 0.5 + 0) / 3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: recall_at_k(["a"], {"a"}, 0), "k must be at least 1, got 0"),
        (lambda: recall_at_k(["a"], set(), 5), "no relevant items"),
        (lambda: reciprocal_rank(["a"], []), "no relevant items"),
        (lambda: mean_recall_at_k([["a"]], [{"a"}, {"b"}], 5), "1 rankings but 2 relevant sets"),
        (lambda: mean_reciprocal_rank([], []), "no queries given"),
    ],
)
def test_undefined_measures_are_refused_with_the_reason(call: object, message: str) -> None:
    with pytest.raises(RetrievalMetricError, match=message):
        call()  # type: ignore[operator]


def test_a_labelled_question_needs_text_and_a_relevant_document() -> None:
    assert LabelledQuestion("Where is it?", ("a.md",)).relevant == ("a.md",)
    with pytest.raises(RetrievalMetricError, match="at least one relevant document"):
        LabelledQuestion("Where is it?", ())
    with pytest.raises(RetrievalMetricError, match="needs text"):
        LabelledQuestion("  ", ("a.md",))


def test_ndcg_discounts_relevant_items_by_their_position() -> None:
    assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, 10) == pytest.approx(1.0)
    # One relevant item at position 2 of 2 possible: (1/log2 3) / (1 + 1/log2 3).
    assert ndcg_at_k(["x", "a"], {"a", "b"}, 10) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["x", "a"], {"a"}, 1) == 0.0
