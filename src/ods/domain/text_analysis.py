"""Text analysis for BM25: words to the terms that are counted and matched.

Two analyzers, named as Milvus names its built-in ones so that a Milvus server's full-text search and the
local profile's sparse snapshot (``ods.adapters.milvus.sparse_snapshot``) rank alike:

- ``english`` (Milvus's ``{"type": "english"}``): words split on Unicode word boundaries, lowercased,
  stemmed by Snowball's English (Porter2) stemmer, then the 33 English stop words of Lucene and Tantivy
  (Milvus's ``_english_`` list) dropped. "running", "runs" and "run" are one term.
- ``standard`` (Milvus's default): words split and lowercased, nothing else.

Scripts written without spaces between words would otherwise be one "word" per clause, which no query
matches. So runs of Han, Hiragana, Katakana and Hangul characters become overlapping character bigrams
(a run of one character stays a unigram), as Lucene's CJK analyzer does: "인권선언" is "인권 권선 선언"
and the query "인권" matches it, Korean particles ("서울에서") and all. Other scripts (Cyrillic, Greek,
Arabic, Devanagari, ...) keep whole lowercased words, unstemmed by the English stemmer they pass through.

Pure functions; PyStemmer (a C extension) is imported on first use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Literal

AnalyzerName = Literal["english", "standard"]
ANALYZERS: tuple[AnalyzerName, ...] = ("english", "standard")
ANALYZER_VERSION = 1
"""Bumped whenever a name's terms change, so an index built with older terms is never queried with new ones."""

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, which Tantivy and Milvus's "_english_" list repeat.
ENGLISH_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)

_CJK = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK unified ideographs extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK unified ideographs extensions B-G
)
# A word: letters/digits/underscores, joined across an inner apostrophe or full stop ("don't", "e.g",
# "3.14"), as Unicode word segmentation (UAX #29) joins them.
_WORD = re.compile(r"\w+(?:['\u2019.]\w+)*")
_SCRIPT_RUN = re.compile(f"[{_CJK}]+|[^{_CJK}]+")
_CJK_RUN = re.compile(f"[{_CJK}]+")
_JOINERS = "'\u2019."


def analyzer(name: str) -> Callable[[str], list[str]]:
    """The analyzer called ``name`` (one of :data:`ANALYZERS`): text → its terms, in text order."""
    if name == "english":
        return analyze_english
    if name == "standard":
        return analyze_standard
    raise ValueError(f"unknown analyzer {name!r}; known: {', '.join(ANALYZERS)}")


def analyze_english(text: str) -> list[str]:
    """Lowercased, stemmed words without English stop words; CJK runs as bigrams."""
    words, grams = _split(text)
    stems = _english_stemmer()(words) if words else []
    return [stem for stem in stems if stem not in ENGLISH_STOP_WORDS] + grams


def analyze_standard(text: str) -> list[str]:
    """Lowercased words; CJK runs as bigrams."""
    words, grams = _split(text)
    return words + grams


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character pairs of ``run`` ("abc" → "ab", "bc"); a single character stays itself."""
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _split(text: str) -> tuple[list[str], list[str]]:
    """The lowercased non-CJK words of ``text`` and the bigrams of its CJK runs (order within each kept:
    BM25 counts terms, it does not read their order)."""
    words: list[str] = []
    grams: list[str] = []
    for token in _WORD.findall(text.lower()):
        if not _CJK_RUN.search(token):
            words.append(token)
            continue
        for run in _SCRIPT_RUN.findall(token):
            if _CJK_RUN.fullmatch(run):
                grams.extend(cjk_bigrams(run))
            elif stripped := run.strip(_JOINERS + "_"):
                words.append(stripped)
    return words, grams


_STEMMERS = threading.local()


def _english_stemmer() -> Callable[[Sequence[str]], list[str]]:
    """Snowball's English stemmer (PyStemmer, which caches recent words); one per thread, as PyStemmer's
    stemmers are not to be shared between threads."""
    stem = getattr(_STEMMERS, "english", None)
    if stem is None:
        import Stemmer  # type: ignore[import-not-found,import-untyped,unused-ignore]

        stem = _STEMMERS.english = Stemmer.Stemmer("english").stemWords
    return stem  # type: ignore[no-any-return]
