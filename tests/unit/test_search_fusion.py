"""How hybrid search fuses its dense and BM25 lists (``ods.stages.retrieve.fuse``) and says so."""

from __future__ import annotations

import pytest

from ods.adapters.milvus.schema import SearchHit
from ods.settings import SearchSettings
from ods.stages.retrieve import describe_search, fuse


def hits(*scored: tuple[str, float]) -> list[SearchHit]:
    return [
        SearchHit(
            id=chunk_id,
            doc_uri=f"file:///{chunk_id}.md",
            doc_sha256="0" * 64,
            chunk_index=0,
            text=chunk_id,
            page=None,
            heading=None,
            metadata={},
            score=score,
        )
        for chunk_id, score in scored
    ]


DENSE = hits(("a", 0.80), ("b", 0.42), ("c", 0.41))
WORDS = hits(("b", 12.0), ("d", 11.9), ("a", 11.8), ("e", 2.0))


def test_rrf_fuses_by_rank_only() -> None:
    fused = fuse(DENSE, WORDS, SearchSettings(fusion="rrf", rrf_k=60), k=4)

    assert [hit.id for hit in fused] == ["b", "a", "d", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_convex_fusion_lets_a_clear_dense_lead_win() -> None:
    # RRF puts "b" first (ranks 2 and 1 against 1 and 3), but "a" leads the meanings by far and is a
    # hair behind on words, which only the scores show.
    fused = fuse(DENSE, WORDS, SearchSettings(fusion="convex", normalisation="minmax"), k=2)

    assert [hit.id for hit in fused] == ["a", "b"]
    assert fused[0].text == "a" and fused[0].doc_uri == "file:///a.md"


def test_exact_cosines_score_words_hits_the_dense_list_lacks() -> None:
    setting = SearchSettings(fusion="convex", normalisation="minmax")
    without = fuse(DENSE, WORDS, setting, k=4)

    with_cosine = fuse(DENSE, WORDS, setting, k=4, cosines={"d": 0.79})

    assert [hit.id for hit in without] == ["a", "b", "d", "c"]
    assert [hit.id for hit in with_cosine] == ["a", "d", "b", "c"]


def test_the_search_line_names_mode_analyzer_and_fusion() -> None:
    default = SearchSettings()

    assert describe_search("dense", "", default) == "dense: cosine similarity of the embeddings"
    assert describe_search("bm25", "english", default) == "bm25: BM25 (english analyzer)"
    assert describe_search("hybrid", "standard", SearchSettings(fusion="rrf", dense_weight=0.7)) == (
        "hybrid: BM25 (standard analyzer) and dense, RRF (k 60, dense weight 0.7) of 400 candidates each"
    )
