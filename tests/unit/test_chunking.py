"""Chunking parsed sections: structure-first cuts, a hard token limit, overlap, determinism."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import pytest

from ods.domain.chunking import Chunk, chunk_id, chunk_sections
from ods.domain.hashing import stable_id


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None
    heading: str | None = None


def count_words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def sentences(prefix: str, count: int, words_each: int = 8) -> str:
    return " ".join(
        f"{prefix}{number} " + " ".join(f"w{number}_{word}" for word in range(words_each - 2)) + " end."
        for number in range(count)
    )


def test_short_sections_become_one_chunk_each_with_page_and_heading() -> None:
    sections = [Section("Alpha text here.", 1, "Intro"), Section("Beta text.", 2, "Methods")]

    chunks = chunk_sections(sections, count_tokens=count_words)

    assert chunks == [
        Chunk(0, "Alpha text here.", 1, "Intro", 3),
        Chunk(1, "Beta text.", 2, "Methods", 2),
    ]


def test_chunks_never_span_sections_and_merge_runs_of_the_same_heading_and_page() -> None:
    sections = [
        Section("First paragraph.", 1, "A"),
        Section("Second paragraph.", 1, "A"),
        Section("Other heading.", 1, "B"),
        Section("   ", 1, "B"),
    ]

    chunks = chunk_sections(sections, count_tokens=count_words)

    assert [(chunk.text, chunk.heading) for chunk in chunks] == [
        ("First paragraph.\n\nSecond paragraph.", "A"),
        ("Other heading.", "B"),
    ]


def test_every_chunk_fits_the_limit_and_consecutive_chunks_overlap() -> None:
    text = sentences("s", 60)  # 480 words in one paragraph
    chunks = chunk_sections(
        [Section(text, 3, "Long")], max_tokens=50, overlap_tokens=10, count_tokens=count_words
    )

    assert len(chunks) > 5
    assert all(chunk.token_count == len(chunk.text.split()) <= 50 for chunk in chunks)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert {(chunk.page, chunk.heading) for chunk in chunks} == {(3, "Long")}
    for previous, current in pairwise(chunks):
        assert current.text.split()[:10] == previous.text.split()[-10:]
    # Nothing is lost: every sentence appears in some chunk.
    for number in range(60):
        assert any(f"s{number} " in chunk.text for chunk in chunks)


def test_paragraph_boundaries_are_preferred_over_sentence_cuts() -> None:
    paragraph_a = sentences("a", 4)  # 32 words
    paragraph_b = sentences("b", 4)

    chunks = chunk_sections(
        [Section(f"{paragraph_a}\n\n{paragraph_b}")],
        max_tokens=40,
        overlap_tokens=0,
        count_tokens=count_words,
    )

    assert [chunk.text for chunk in chunks] == [paragraph_a, paragraph_b]


def test_sentences_are_kept_whole_when_a_paragraph_is_too_long() -> None:
    text = sentences("s", 10)  # 10 sentences of 8 words

    chunks = chunk_sections([Section(text)], max_tokens=20, overlap_tokens=0, count_tokens=count_words)

    assert all(chunk.text.endswith("end.") for chunk in chunks)
    assert [chunk.token_count for chunk in chunks] == [16] * 5


def test_a_sentence_longer_than_the_limit_is_cut_at_words() -> None:
    text = " ".join(f"word{number}" for number in range(45))

    chunks = chunk_sections([Section(text)], max_tokens=20, overlap_tokens=0, count_tokens=count_words)

    assert [chunk.token_count for chunk in chunks] == [20, 20, 5]
    assert " ".join(chunk.text for chunk in chunks) == text


def test_a_single_word_longer_than_the_limit_is_cut_at_characters() -> None:
    def count_characters(texts: list[str]) -> list[int]:
        return [len(text) for text in texts]

    chunks = chunk_sections(
        [Section("x" * 25)], max_tokens=10, overlap_tokens=0, count_tokens=count_characters
    )

    assert [chunk.text for chunk in chunks] == ["x" * 10, "x" * 10, "x" * 5]


def test_chunking_is_deterministic() -> None:
    sections = [Section(sentences("s", 40), 1, "H"), Section(sentences("t", 30), 2, None)]

    first = chunk_sections(sections, max_tokens=30, overlap_tokens=5, count_tokens=count_words)
    second = chunk_sections(sections, max_tokens=30, overlap_tokens=5, count_tokens=count_words)

    assert first == second


@pytest.mark.parametrize(("max_tokens", "overlap_tokens"), [(0, 0), (10, 10), (10, -1)])
def test_impossible_limits_are_refused(max_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(ValueError, match="tokens"):
        chunk_sections(
            [Section("x")], max_tokens=max_tokens, overlap_tokens=overlap_tokens, count_tokens=count_words
        )


def test_chunk_id_is_stable_and_depends_on_every_part() -> None:
    base = chunk_id("kb", "s3://b/a.pdf", "ab" * 32, 0)

    assert base == stable_id("kb", "s3://b/a.pdf", "ab" * 32, 0)
    assert len(base) == 32
    assert (
        len(
            {
                base,
                chunk_id("kb2", "s3://b/a.pdf", "ab" * 32, 0),
                chunk_id("kb", "s3://b/b.pdf", "ab" * 32, 0),
                chunk_id("kb", "s3://b/a.pdf", "cd" * 32, 0),
                chunk_id("kb", "s3://b/a.pdf", "ab" * 32, 1),
            }
        )
        == 5
    )


def test_chunks_fit_the_real_model_tokenizer() -> None:
    from ods.adapters.models.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    text = (
        "Tokenizers split uncommon words like electroencephalography, "
        "pneumonoultramicroscopicsilicovolcanoconiosis and https://example.org/a/very/long/path?x=1 "
        "into many word pieces. "
    ) * 40

    chunks = chunk_sections(
        [Section(text, 1, "T")], max_tokens=64, overlap_tokens=8, count_tokens=embedder.count_tokens
    )

    assert len(chunks) > 5
    assert all(chunk.token_count <= 64 for chunk in chunks)
    assert [chunk.token_count for chunk in chunks] == embedder.count_tokens([chunk.text for chunk in chunks])
    assert max(chunk.token_count for chunk in chunks) > 40  # packed, not one sentence per chunk
