"""Benchmark of the BM25 analyzers on many scripts: can a one-word query find its language's text?

The first article of the Universal Declaration of Human Rights in 494 languages
(``../shared/corpora/docs/UDHR_first_article_all.txt``; each language one document) is ranked by BM25
(k1=1.2, b=0.75, Milvus's IDF) for one-word queries in Korean, Chinese, Japanese, Russian and English,
each taken from its own language's article (a word stem, without its particles or inflection where the
language has them). A query succeeds when its language's article is in the top 10. Compared, in the same
run:

- baseline: whole lowercased ``\\w+`` words, as Milvus Lite's standard analyzer splits text;
- ``english`` (``ods.domain.text_analysis``): words stemmed, stop words dropped, CJK runs as bigrams.

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


if __name__ == "__main__":
    main()
