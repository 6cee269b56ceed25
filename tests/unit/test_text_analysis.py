"""The BM25 analyzers (ods.domain.text_analysis) and the sparse snapshot's exact BM25."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ods.adapters.milvus.sparse_snapshot import SparseSnapshot
from ods.domain.text_analysis import (
    ENGLISH_STOP_WORDS,
    analyze_english,
    analyze_standard,
    analyzer,
    cjk_bigrams,
)


def test_english_stems_lowercases_and_drops_stop_words() -> None:
    assert analyze_english("Running RUNS run") == ["run", "run", "run"]
    assert analyze_english("The studies of the generalization") == ["studi", "general"]
    assert analyze_english("it is what it is, and that is that") == ["what"]
    assert len(ENGLISH_STOP_WORDS) == 33  # Lucene's, as Milvus's "_english_"


def test_words_join_across_inner_apostrophes_and_full_stops() -> None:
    assert analyze_standard("U.S.A. don't 3.14 e.g. end.") == ["u.s.a", "don't", "3.14", "e.g", "end"]
    assert analyze_standard("snake_case, hyphen-ated") == ["snake_case", "hyphen", "ated"]


def test_cjk_runs_become_bigrams_and_other_scripts_whole_words() -> None:
    assert analyze_english("인권선언은") == ["인권", "권선", "선언", "언은"]
    assert analyze_english("尊严和权利") == ["尊严", "严和", "和权", "权利"]
    assert analyze_english("ひらがな") == ["ひら", "らが", "がな"]
    assert analyze_english("Все люди ΕΛΛΗΝΙΚΆ مرحبا") == ["все", "люди", "ελληνικά", "مرحبا"]
    assert analyze_english("abc漢字def 字") == ["abc", "def", "漢字", "字"]
    assert cjk_bigrams("字") == ["字"]


def test_unknown_analyzer_is_refused_by_name() -> None:
    assert analyzer("standard") is analyze_standard
    with pytest.raises(ValueError, match="unknown analyzer 'french'; known: english, standard"):
        analyzer("french")


TEXTS = ["red apples and red pears", "green apples", "pears", "", "plums, red plums, red plums"]


def test_sparse_snapshot_scores_are_bm25_and_ties_keep_row_order(tmp_path: Path) -> None:
    snapshot = SparseSnapshot.build(TEXTS, analyzer_name="english", dense_identity=(1, 2, 3))
    scores = snapshot.scores("red")
    lengths = np.array([4, 2, 1, 0, 5])  # "and" dropped
    df, k1, b = 2, 1.2, 0.75
    idf = np.log(1 + (5 - df + 0.5) / (df + 0.5))
    tf = np.array([2, 0, 0, 0, 2])
    expected = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths / lengths.mean()))
    assert scores == pytest.approx(expected)
    apples = snapshot.scores("apples")
    assert snapshot.search("apples", 5) == [(1, apples[1]), (0, apples[0])]  # the shorter row first
    assert snapshot.search("kiwis", 3) == [] and snapshot.search("the and", 3) == []
    mask = np.array([False, True, True, True, True])
    assert [row for row, _ in snapshot.search("red apples", 5, mask)] == [1, 4]

    snapshot.save(tmp_path / "s.bm25.npz")
    reopened = SparseSnapshot.open(tmp_path / "s.bm25.npz")
    assert reopened is not None and reopened.terms == snapshot.terms
    assert reopened.dense_identity == (1, 2, 3) and reopened.rows == 5
    assert reopened.scores("red plums") == pytest.approx(snapshot.scores("red plums"))
    assert SparseSnapshot.open(tmp_path / "missing.bm25.npz") is None
    (tmp_path / "bad.bm25.npz").write_bytes(b"not a snapshot")
    assert SparseSnapshot.open(tmp_path / "bad.bm25.npz") is None


def test_ties_at_the_cut_keep_the_lowest_rows() -> None:
    snapshot = SparseSnapshot.build(
        ["pear"] * 6 + ["apple"], analyzer_name="english", dense_identity=(0, 0, 0)
    )
    assert [row for row, _ in snapshot.search("pear", 3)] == [0, 1, 2]
