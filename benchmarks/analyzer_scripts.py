"""Benchmark of the BM25 analyzers on many scripts: can a one-word query find its language's text?

The first article of the Universal Declaration of Human Rights in 494 languages
(``../shared/corpora/docs/UDHR_first_article_all.txt``; each language one document) is ranked by BM25
(k1=1.2, b=0.75, Milvus's IDF) for one-word queries in Korean, Chinese, Japanese, Russian and English,
each taken from its own language's article (a word stem, without its particles or inflection where the
language has them). A query succeeds when its language's article is in the top 10. Compared, in the same
run:

- baseline: whole lowercased ``\\w+`` words, as Milvus Lite's standard analyzer splits text;
- ``english`` (``ods.domain.text_analysis``): words stemmed, stop words dropped, CJK runs as bigrams.

Then Korean prose as a user's documents hold it: the lines of ``korean-text-with-tables.pdf`` (a card's
benefits leaflet; text by pypdf, as ingestion reads PDFs) holding Hangul, each one document, and nouns
that occur there inside longer words or with particles ("포인트" in "빅포인트", "포인트는"). A line is
relevant when it contains the noun; the figure is the share of relevant lines that BM25 matches at all
(any score above 0), and of matched lines that are relevant.

    .venv/bin/python benchmarks/analyzer_scripts.py [--corpora ../shared/corpora]
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

QUERIES = {
    "Korean": ["인간", "존엄", "권리", "자유", "양심", "형제애"],
    "Chinese, Mandarin (Simplified)": ["尊严", "权利", "良心", "兄弟"],
    "Japanese": ["人間", "尊厳", "権利", "良心"],
    "Russian": ["свободными", "разумом"],
    "English": ["rights", "born free", "brotherhood"],
}


KOREAN_NOUNS = ["포인트", "할부", "적립", "카드", "쇼핑", "임대매장", "이용금액"]


def korean_lines(corpora: Path) -> list[str]:
    from pypdf import PdfReader

    pages = PdfReader(corpora / "docs" / "korean-text-with-tables.pdf").pages
    return [
        line.strip()
        for page in pages
        for line in (page.extract_text() or "").split("\n")
        if re.search("[\uac00-\ud7af]", line)
    ]


def whole_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rank(documents: list[str], analyze: Callable[[str], list[str]], query: str, k: int) -> list[int]:
    """The ``k`` best documents for ``query`` by BM25 (ties by position)."""
    counts = [Counter(analyze(document)) for document in documents]
    lengths = [sum(count.values()) for count in counts]
    average = sum(lengths) / len(lengths)
    scores: dict[int, float] = {}
    for term, weight in Counter(analyze(query)).items():
        df = sum(term in count for count in counts)
        idf = math.log(1 + (len(documents) - df + 0.5) / (df + 0.5))
        for row, count in enumerate(counts):
            if tf := count[term]:
                norm = tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lengths[row] / average))
                scores[row] = scores.get(row, 0.0) + weight * idf * norm
    return [row for row, _ in sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:k]]


def main() -> None:
    from ods.domain.text_analysis import analyze_english

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", type=Path, default=Path(__file__).parents[2] / "shared" / "corpora")
    arguments = parser.parse_args()
    text = (arguments.corpora / "docs" / "UDHR_first_article_all.txt").read_text(encoding="utf-8")
    blocks = [block.strip().split("\n", 1) for block in re.split(r"\n\s*\n", text) if "\n" in block.strip()]
    names = [name.strip() for name, _ in blocks]
    documents = [body for _, body in blocks]
    print(f"{len(documents)} documents (languages), k=10\n")
    print(f"{'analyzer':34} {'found':>7}   rank of the language's article per query")
    for label, analyze in [
        ("baseline: whole words (\\w+)", whole_words),
        ("english + CJK bigrams", analyze_english),
    ]:
        ranks: list[int | None] = []
        for language, queries in QUERIES.items():
            target = names.index(language)
            for query in queries:
                found = rank(documents, analyze, query, 10)
                ranks.append(found.index(target) + 1 if target in found else None)
        hits = sum(rank is not None for rank in ranks)
        shown = " ".join("-" if rank is None else str(rank) for rank in ranks)
        print(f"{label:34} {hits:3}/{len(ranks):<3}   {shown}")

    lines = korean_lines(arguments.corpora)
    print(f"\n{len(lines)} Korean lines of korean-text-with-tables.pdf; nouns: {' '.join(KOREAN_NOUNS)}")
    print(f"{'analyzer':34} {'recall':>7} {'precision':>10}   (lines matched / holding the noun, summed)")
    for label, analyze in [
        ("baseline: whole words (\\w+)", whole_words),
        ("english + CJK bigrams", analyze_english),
    ]:
        relevant = matched = both = 0
        for noun in KOREAN_NOUNS:
            holding = {row for row, line in enumerate(lines) if noun in line}
            found = set(rank(lines, analyze, noun, len(lines)))
            relevant, matched, both = (
                relevant + len(holding),
                matched + len(found),
                both + len(holding & found),
            )
        print(f"{label:34} {both / relevant:7.2f} {both / max(matched, 1):10.2f}   ({both}/{relevant} found)")


if __name__ == "__main__":
    main()
