"""Splitting parsed document sections into chunks that fit the embedding model.

Structure decides the cut points: a chunk never spans two sections, and inside a section the text is cut at
paragraphs first, then lines, sentences and words, and characters only for a single word longer than the
budget. Token counts come from an injected counter (the embedder's tokenizer in production), so this module
stays pure and every chunk provably fits ``max_tokens`` as that counter sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ods.domain.hashing import stable_id

TokenCounter = Callable[[list[str]], list[int]]
"""Token counts of a batch of texts, one per text, in order (e.g. ``Embedder.count_tokens``)."""

# Cut levels, coarsest first; the string is how pieces cut at that level are joined back together.
_PARAGRAPH = (re.compile(r"\n[ \t\r\f\v]*\n\s*"), "\n\n")
_LINE = (re.compile(r"\s*\n\s*"), "\n")
_SENTENCE = (re.compile(r"(?<=[.!?;:。！？；])\s+"), " ")
_WORD = (re.compile(r"\s+"), " ")
_LEVELS = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)


class SectionLike(Protocol):
    """What the chunker reads from a parsed section (``ods.domain.documents.Section`` satisfies it)."""

    @property
    def text(self) -> str: ...

    @property
    def page(self) -> int | None: ...

    @property
    def heading(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document to embed and index; ``index`` is its position within the document."""

    index: int
    text: str
    page: int | None
    heading: str | None
    token_count: int


@dataclass(frozen=True, slots=True)
class _Unit:
    """A piece of section text that fits the budget, and the separator that follows it in the section."""

    text: str
    tokens: int
    joiner: str


def chunk_id(kb: str, uri: str, sha256: str, index: int) -> str:
    """The chunk's primary key in the vector index: same document content, same ids, on every run."""
    return stable_id(kb, uri, sha256, index)


def chunk_sections(
    sections: Iterable[SectionLike],
    *,
    max_tokens: int = 200,
    overlap_tokens: int = 30,
    count_tokens: TokenCounter,
) -> list[Chunk]:
    """Chunks of ``sections`` in document order, each at most ``max_tokens`` per ``count_tokens``.

    Consecutive sections with the same heading and page are read as one (parsers often emit a section
    per paragraph). Consecutive chunks of one section share up to ``overlap_tokens`` trailing words so a
    sentence cut at a boundary is still retrievable whole.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(
            f"overlap_tokens must be in [0, max_tokens), got {overlap_tokens} with {max_tokens=}"
        )
    chunker = _SectionChunker(max_tokens, overlap_tokens, count_tokens)
    chunks: list[Chunk] = []
    for text, page, heading in _merge_sections(sections):
        for piece, tokens in chunker.chunk(text):
            chunks.append(Chunk(len(chunks), piece, page, heading, tokens))
    return chunks


def _merge_sections(sections: Iterable[SectionLike]) -> list[tuple[str, int | None, str | None]]:
    merged: list[tuple[str, int | None, str | None]] = []
    for section in sections:
        text = section.text.strip()
        if not text:
            continue
        if merged and merged[-1][1:] == (section.page, section.heading):
            merged[-1] = (f"{merged[-1][0]}\n\n{text}", section.page, section.heading)
        else:
            merged.append((text, section.page, section.heading))
    return merged


class _SectionChunker:
    def __init__(self, max_tokens: int, overlap_tokens: int, count_tokens: TokenCounter) -> None:
        self._max = max_tokens
        self._overlap = overlap_tokens
        self._count = count_tokens

    def chunk(self, text: str) -> list[tuple[str, int]]:
        # Units leave room for the overlap carried into the next chunk, so the overlap always fits.
        [tokens] = self._count([text])
        units = self._split(text, tokens, max(1, self._max - self._overlap), 0, "")
        drafts = self._merge(units)
        counts = self._count(drafts)
        chunks: list[tuple[str, int]] = []
        for draft, tokens in zip(drafts, counts, strict=True):
            if tokens <= self._max:
                chunks.append((draft, tokens))
            else:  # the counter is not additive over joins (rare): re-cut this draft by measured words
                chunks.extend(self._cut_words_measured(draft))
        return chunks

    def _split(self, text: str, tokens: int, budget: int, level: int, joiner: str) -> list[_Unit]:
        """Units of ``text`` (``tokens`` long) that each fit ``budget``, cut at the coarsest level that helps."""
        if tokens <= budget:
            return [_Unit(text, tokens, joiner)]
        if level == len(_LEVELS):
            return self._split_characters(text, budget, joiner)
        pattern, level_joiner = _LEVELS[level]
        pieces = [piece.strip() for piece in pattern.split(text) if piece.strip()]
        if len(pieces) <= 1:
            return self._split(text, tokens, budget, level + 1, joiner)
        units: list[_Unit] = []
        for position, (piece, piece_tokens) in enumerate(zip(pieces, self._count(pieces), strict=True)):
            piece_joiner = joiner if position == len(pieces) - 1 else level_joiner
            units.extend(self._split(piece, piece_tokens, budget, level + 1, piece_joiner))
        return units

    def _split_characters(self, word: str, budget: int, joiner: str) -> list[_Unit]:
        """A single over-long token run (a URL, a hash): the longest prefixes that fit, in order."""
        units: list[_Unit] = []
        rest = word
        while rest:
            low, high = 1, len(rest)
            while low < high:  # largest prefix length whose count fits
                middle = (low + high + 1) // 2
                if self._count([rest[:middle]])[0] <= budget:
                    low = middle
                else:
                    high = middle - 1
            [tokens] = self._count([rest[:low]])
            units.append(_Unit(rest[:low], tokens, "" if low < len(rest) else joiner))
            rest = rest[low:]
        return units

    def _merge(self, units: Sequence[_Unit]) -> list[str]:
        """Greedy packing of units into drafts; each new draft starts with the previous draft's tail."""
        drafts: list[str] = []
        current = ""
        current_tokens = 0
        fresh = True  # nothing but carried-over overlap in ``current``
        for unit in units:
            if current and current_tokens + unit.tokens > self._max and not fresh:
                drafts.append(current.strip())
                current, current_tokens = self._tail(current.strip())
                if current:
                    current += " "
            current += unit.text + unit.joiner
            current_tokens += unit.tokens
            fresh = False
        if not fresh:
            drafts.append(current.strip())
        return drafts

    def _tail(self, draft: str) -> tuple[str, int]:
        """The longest run of trailing words within the overlap budget, at most half of ``draft``."""
        words = draft.split()
        limit = min(self._overlap, len(words) // 2)
        if limit == 0:
            return "", 0
        candidates = [" ".join(words[-size:]) for size in range(1, limit + 1)]
        best = ("", 0)
        for candidate, tokens in zip(candidates, self._count(candidates), strict=True):
            if tokens <= self._overlap:
                best = (candidate, tokens)
        return best

    def _cut_words_measured(self, draft: str) -> list[tuple[str, int]]:
        words = draft.split()
        pieces: list[tuple[str, int]] = []
        start = 0
        while start < len(words):
            low, high = start + 1, len(words)
            while low < high:
                middle = (low + high + 1) // 2
                if self._count([" ".join(words[start:middle])])[0] <= self._max:
                    low = middle
                else:
                    high = middle - 1
            text = " ".join(words[start:low])
            [tokens] = self._count([text])
            if tokens > self._max:  # one word alone is too long for this counter
                pieces.extend(
                    (unit.text, unit.tokens) for unit in self._split_characters(text, self._max, "")
                )
            else:
                pieces.append((text, tokens))
            start = low
        return pieces
