"""Every file of the shared document corpus ends parsed with text, or rejected with the reason that is true of it.

The expectations come from corpora/docs/MANIFEST.csv notes (encrypted, scanned, UTF-16, ...). Files are
parsed through ``DocumentParserPool``, the path the ingest flow takes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from ods.adapters.workers.parse_pool import DocumentParserPool
from ods.domain.documents import DocumentRejected

pytestmark = pytest.mark.corpora


class Parsed(NamedTuple):
    parser: str
    contains: str  # a phrase that proves the right text (and encoding) came out
    pages: int | None = None


class Rejected(NamedTuple):
    reason: str
    detail: str  # the detail must name the real cause


EXPECTED: dict[str, Parsed | Rejected] = {
    "layout-parser-paper-fast.pdf": Parsed("pdf", "LayoutParser: A Uniﬁed Toolkit", pages=2),
    "password.pdf": Rejected("encrypted", "encrypted PDF: a password is required (RC4-128)"),
    # pdfminer chokes on its structure; pypdf reads both pages.
    "invalid-pdf-structure-pdfminer-one-page.pdf": Parsed("pdf", "National Cybersecurity Strategy", pages=2),
    "korean-text-with-tables.pdf": Parsed("pdf", "적립 제외 대상", pages=1),
    "loremipsum-flat.pdf": Rejected(
        "no_text_layer", "PDF has 1 page but no text layer (scanned images? run OCR"
    ),
    "layout-parser-paper-with-empty-pages.pdf": Parsed("pdf", "Document Image Analysis", pages=4),
    "rotated-page-90.pdf": Parsed("pdf", "Rotated page fixture", pages=1),
    "fake-html-cp1252.html": Parsed("html", "El niño comió paella con ñoquis"),
    "example-with-scripts.html": Parsed("html", "Russian Offensive Campaign Assessment"),
    "ideas-page.html": Parsed("html", "Someone fed my essays into GPT"),
    "sample-readme.md": Parsed("markdown", "The sample docs directory contains"),
    "simple-table.md": Parsed("markdown", "Juicy Apples | 1.99 | 739"),
    "umlauts-non-utf8.md": Parsed("markdown", "äöüß"),
    "empty.txt": Rejected("empty", "the file is empty: 0 bytes"),
    "fake-text-utf-16-be.txt": Parsed("text", "This is a test document to use for unit tests."),
    "norwich-city.txt": Parsed("text", "Norwich City"),
    "UDHR_first_article_all.txt": Parsed("text", "人人生而自由"),
    "docx-tables.docx": Parsed("docx", "Header Col 1\tHeader Col 2"),
    # "Malformed" for unstructured (a placeholder its layout lacks); python-pptx reads the slide.
    "fake-power-point-malformed.pptx": Parsed("pptx", "Problem Date Placeholder", pages=1),
    "fake-email.eml": Parsed("email", "Subject: Test Email\nFrom: Matthew Robinson"),
    "empty.eml": Rejected("empty", "the file is empty: only whitespace (13 bytes)"),
    "crazyones.pdf": Parsed("pdf", "The Crazy Ones", pages=1),
    "crazyones-encrypted-256.pdf": Rejected("encrypted", "encrypted PDF: a password is required (AES-256)"),
    "r6-empty-password.pdf": Parsed("pdf", "pdf encryption test", pages=1),
    # Broken xref table: strict parsing fails, pypdf's lenient mode rebuilds it.
    "issue-297.pdf": Parsed("pdf", "test example", pages=1),
    # One 395 KB line of base64: it is text, so it parses; the chunker must split a line without spaces.
    "test-file-contents.txt": Parsed("text", "data:message/rfc822;base64,TUlNRS1WZXJzaW9u"),
}


@pytest.fixture(scope="module")
def pool() -> Iterator[DocumentParserPool]:
    with DocumentParserPool(timeout_s=60, memory_mb=1024) as pool:
        yield pool


def test_the_table_covers_every_file_of_the_corpus(corpora_dir: Path) -> None:
    docs = corpora_dir / "docs"
    on_disk = {path.name for path in docs.iterdir() if path.name != "MANIFEST.csv"}
    with (docs / "MANIFEST.csv").open(encoding="utf-8") as manifest:
        listed = {row["file"] for row in csv.DictReader(manifest)}
    assert on_disk == listed == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_ends_parsed_or_rejected_for_its_real_cause(
    name: str, corpora_dir: Path, pool: DocumentParserPool
) -> None:
    expected = EXPECTED[name]
    data = (corpora_dir / "docs" / name).read_bytes()
    if isinstance(expected, Rejected):
        with pytest.raises(DocumentRejected) as caught:
            pool.parse(data, name)
        assert (caught.value.reason, caught.value.document) == (expected.reason, name)
        assert expected.detail in caught.value.detail
        return
    document = pool.parse(data, name)
    assert document.parser == expected.parser
    assert document.pages == expected.pages
    assert expected.contains in document.text
    assert all(section.text.strip() for section in document.sections)
    if expected.pages is not None:
        assert all(
            section.page is not None and 1 <= section.page <= expected.pages for section in document.sections
        )


def test_html_scripts_are_stripped_from_the_corpus_page(corpora_dir: Path, pool: DocumentParserPool) -> None:
    page = pool.parse(
        (corpora_dir / "docs" / "example-with-scripts.html").read_bytes(), "example-with-scripts.html"
    )
    assert "function(" not in page.text and "<script" not in page.text


def test_empty_pdf_pages_are_reported_not_indexed(corpora_dir: Path, pool: DocumentParserPool) -> None:
    name = "layout-parser-paper-with-empty-pages.pdf"
    document = pool.parse((corpora_dir / "docs" / name).read_bytes(), name)
    assert [section.page for section in document.sections] == [1, 4]
    assert document.metadata["pages_without_text"] == "2,3"
