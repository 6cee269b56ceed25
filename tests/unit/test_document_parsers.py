"""Each document format parses into sections, and each bad file is rejected with the reason a person can act on."""

from __future__ import annotations

import codecs
import functools
import io
import pickle
import re
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ContentStream, DictionaryObject, NameObject, StreamObject

from ods.adapters.documents.parsers import decode_text, parse_document
from ods.domain.documents import DocumentRejected, ParsedDocument, Section


def rejected(data: bytes, name: str, **kwargs: int) -> DocumentRejected:
    with pytest.raises(DocumentRejected) as caught:
        parse_document(data, name, **kwargs)
    assert caught.value.document == name
    return caught.value


def pdf_bytes(*page_texts: str | None, password: str | None = None) -> bytes:
    """A PDF with one page per text (None: a blank page), drawn in Helvetica."""
    writer = PdfWriter()
    for text in page_texts:
        page = writer.add_blank_page(612, 792)
        if text is None:
            continue
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        stream = ContentStream(None, writer)
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page.replace_contents(stream)
    if password is not None:
        writer.encrypt(password, algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# --- domain values ----------------------------------------------------------------------------------------


def test_parsed_document_text_puts_headings_above_their_sections() -> None:
    document = ParsedDocument(
        (Section("intro", heading=None), Section("body", page=2, heading="Methods")), parser="x"
    )
    assert document.text == "intro\n\nMethods\nbody"


def test_document_rejected_survives_pickling_with_reason_and_detail() -> None:
    error = DocumentRejected("encrypted", "encrypted PDF: a password is required (AES-256)", document="a.pdf")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, as between parser processes
    assert (copy.reason, copy.detail, copy.document) == (error.reason, error.detail, "a.pdf")
    assert str(copy) == "a.pdf: encrypted PDF: a password is required (AES-256) (quarantined as encrypted)"


def test_document_rejected_refuses_an_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown quarantine reason 'sad'"):
        DocumentRejected("sad", "no")  # type: ignore[arg-type]


# --- PDF --------------------------------------------------------------------------------------------------


def test_pdf_text_is_kept_per_page_and_blank_pages_are_listed() -> None:
    document = parse_document(pdf_bytes("First page", None, "Third page"), "report.pdf")
    assert [(s.page, s.text) for s in document.sections] == [(1, "First page"), (3, "Third page")]
    assert document.pages == 3
    assert document.parser == "pdf"
    assert document.metadata["pages_without_text"] == "2"


def test_pdf_encrypted_with_the_empty_password_is_opened() -> None:
    document = parse_document(pdf_bytes("Open sesame", password=""), "open.pdf")
    assert document.text == "Open sesame"
    assert document.metadata["encryption"] == "AES-256, opened with the empty password"


def test_pdf_needing_a_password_is_rejected_as_encrypted_naming_the_cipher() -> None:
    error = rejected(pdf_bytes("secret", password="hunter2"), "locked.pdf")
    assert error.reason == "encrypted"
    assert error.detail == "encrypted PDF: a password is required (AES-256)"


def test_pdf_without_any_text_is_rejected_as_having_no_text_layer() -> None:
    error = rejected(pdf_bytes(None, None), "blank.pdf")
    assert error.reason == "no_text_layer"
    assert error.detail.startswith("PDF has 2 pages but no text layer")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param(b"%PDF-1.4\n1 0 obj << /Type", "PDF cannot be read: ", id="truncated"),
        pytest.param(b"GIF89a not a pdf at all", "not a PDF: no %PDF- header", id="wrong-content"),
    ],
)
def test_broken_pdf_is_rejected_as_malformed_with_the_parser_message(data: bytes, detail: str) -> None:
    error = rejected(data, "broken.pdf")
    assert error.reason == "malformed"
    assert detail in error.detail


@functools.cache
def _inflating_stream() -> bytes:
    """76 MB of spaces deflated to ~75 KB: more than pypdf inflates (75 MB) before it gives up."""
    return zlib.compress(b" " * 76_000_000, 9)


def flate_bomb_pdf(*pages: str | None) -> bytes:
    """``pdf_bytes(*pages)`` where each None page's content is a Flate bomb instead of blank."""
    reader = PdfReader(io.BytesIO(pdf_bytes(*(page or "bomb" for page in pages))))
    writer = PdfWriter(clone_from=reader)
    for page, text in zip(writer.pages, pages, strict=True):
        if text is None:
            bomb = StreamObject()
            bomb.set_data(b"")
            bomb._data = _inflating_stream()  # already deflated: written as is, inflated on reading
            bomb[NameObject("/Filter")] = NameObject("/FlateDecode")
            page[NameObject("/Contents")] = writer._add_object(bomb)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_whose_only_page_is_a_flate_bomb_is_rejected_naming_the_page_and_the_limit() -> None:
    error = rejected(flate_bomb_pdf(None), "bomb.pdf")

    assert error.reason == "malformed"
    assert re.fullmatch(
        r"no PDF page could be read: page 1: LimitReachedError: Limit reached while decompressing\. \d+ bytes "
        r"remaining\. \(a compressed stream inflates past the parser's size limit: a decompression bomb\?\)",
        error.detail,
    ), error.detail


def test_pdf_pages_that_fail_alike_are_listed_as_a_range_and_the_rest_is_kept() -> None:
    document = parse_document(flate_bomb_pdf(None, None, "Readable third page", None), "partly.pdf")

    assert [section.page for section in document.sections] == [3]
    assert document.metadata["pages_failed"].startswith("pages 1-2, 4: LimitReachedError: Limit reached")


def test_pdf_with_more_pages_than_allowed_is_rejected_as_too_large() -> None:
    error = rejected(pdf_bytes("a", "b", "c"), "long.pdf", max_pages=2)
    assert error.reason == "too_large"
    assert error.detail == "PDF has 3 pages, more than the limit of 2"


def test_pdf_without_extension_is_recognised_by_its_magic_bytes() -> None:
    assert parse_document(pdf_bytes("magic"), "download").parser == "pdf"


# --- HTML and Markdown -----------------------------------------------------------------------------------


def test_html_drops_scripts_styles_and_comments_and_splits_at_headings() -> None:
    page = b"""<!doctype html><html><head><title>The Page</title><style>p {color: red}</style>
    <script>var secret = "do not index";</script></head><body>
    <noscript>enable javascript</noscript><p>Lead paragraph.</p><!-- a comment -->
    <h2>Results <small>(2024)</small></h2><div>First <b>bold</b> point.</div><ul><li>one</li><li>two</li></ul>
    <table><tr><td>a</td><td>b</td></tr></table></body></html>"""
    document = parse_document(page, "page.html")
    assert [(s.heading, s.text) for s in document.sections] == [
        (None, "Lead paragraph."),
        ("Results (2024)", "First bold point.\none\ntwo\na b"),
    ]
    assert document.metadata["title"] == "The Page"
    assert (
        "secret" not in document.text and "javascript" not in document.text and "color" not in document.text
    )


def test_html_charset_comes_from_the_meta_tag() -> None:
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Grüße aus Köln</p></body></html>'
    document = parse_document(page.encode("iso-8859-1"), "legacy.htm")
    assert document.text == "Grüße aus Köln"
    assert document.metadata["encoding"] == "iso-8859-1"


def test_html_without_visible_text_is_empty() -> None:
    error = rejected(b"<html><script>alert(1)</script><style>a{}</style></html>", "blank.html")
    assert error.reason == "empty"


def test_markdown_atx_headings_start_sections_but_not_inside_code_fences() -> None:
    markdown = (
        "Preamble\n\n# Install\n\n```bash\n# not a heading\npip install ods\n```\n\n## Use ##\nRun it.\n"
    )
    document = parse_document(markdown.encode(), "README.md")
    assert [(s.heading, s.text) for s in document.sections] == [
        (None, "Preamble"),
        ("Install", "```bash\n# not a heading\npip install ods\n```"),
        ("Use", "Run it."),
    ]


# --- plain text and encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        pytest.param(codecs.BOM_UTF16_LE + "Zürich ☃".encode("utf-16-le"), "utf-16-le", id="utf16le-bom"),
        pytest.param(codecs.BOM_UTF16_BE + "Zürich ☃".encode("utf-16-be"), "utf-16-be", id="utf16be-bom"),
        pytest.param("Zürich ☃".encode("utf-16-be"), "utf-16-be", id="utf16be-no-bom"),
        pytest.param("Zürich ☃".encode("utf-16-le"), "utf-16-le", id="utf16le-no-bom"),
        pytest.param(codecs.BOM_UTF32_LE + "Zürich ☃".encode("utf-32-le"), "utf-32-le", id="utf32le-bom"),
        pytest.param(codecs.BOM_UTF8 + "Zürich ☃".encode(), "utf-8", id="utf8-bom"),
        pytest.param("Zürich ☃".encode(), "utf-8", id="utf8"),
    ],
)
def test_text_encoding_is_detected_from_bom_nul_pattern_or_utf8(data: bytes, encoding: str) -> None:
    document = parse_document(data, "notes.txt")
    assert document.text == "Zürich ☃"
    assert document.metadata["encoding"] == encoding


def test_legacy_single_byte_text_is_decoded_by_detection() -> None:
    text = "Café crème, déjà vu, naïve façade — 15 €. " * 3
    decoded, encoding = decode_text(text.encode("cp1252"))
    assert decoded == text
    assert encoding == "cp1252"


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param(b"", "the file is empty: 0 bytes", id="zero-bytes"),
        pytest.param(b"  \n\t\r\n ", "the file is empty: only whitespace (7 bytes)", id="whitespace"),
        pytest.param("\n \n".encode("utf-16"), "only whitespace", id="utf16-whitespace"),
    ],
)
def test_empty_text_is_rejected_as_empty(data: bytes, detail: str) -> None:
    error = rejected(data, "empty.txt")
    assert error.reason == "empty"
    assert detail in error.detail


def test_binary_bytes_named_txt_are_malformed() -> None:
    error = rejected(bytes(range(256)) * 8, "firmware.txt")
    assert error.reason == "malformed"


@pytest.mark.parametrize("name", ["table.csv", "table.tsv", "data.json", "data.jsonl"])
def test_csv_tsv_and_json_are_indexed_as_text(name: str) -> None:
    data = b'{"id": 1, "city": "Oslo"}\nid,city\n1,Oslo\n'
    document = parse_document(data, name)
    assert document.parser == "text"
    assert "Oslo" in document.text


# --- Office --------------------------------------------------------------------------------------------


def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Opening words.")
    document.add_heading("Prices", level=1)
    document.add_paragraph("As of today:")
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, [("Item", "Price"), ("Apple", "1.99")], strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    path = tmp_path / "prices.docx"
    document.save(str(path))
    parsed = parse_document(path.read_bytes(), path.name)
    assert [(s.heading, s.text) for s in parsed.sections] == [
        (None, "Opening words."),
        ("Prices", "As of today:\nItem\tPrice\nApple\t1.99"),
    ]
    assert parsed.parser == "docx"


def test_pptx_gives_one_section_per_slide_with_the_slide_number(tmp_path: Path) -> None:
    import pptx

    presentation = pptx.Presentation()
    for title, body in [("Welcome", "Agenda for today"), ("Numbers", "Revenue grew 12%")]:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    presentation.slides.add_slide(presentation.slide_layouts[6])  # blank slide: skipped
    path = tmp_path / "deck.pptx"
    presentation.save(str(path))
    parsed = parse_document(path.read_bytes(), path.name)
    assert [(s.page, s.heading, s.text) for s in parsed.sections] == [
        (1, "Welcome", "Agenda for today"),
        (2, "Numbers", "Revenue grew 12%"),
    ]
    assert parsed.pages == 3


def test_office_file_that_is_not_a_zip_is_malformed(tmp_path: Path) -> None:
    import pptx

    path = tmp_path / "deck.pptx"
    pptx.Presentation().save(str(path))
    error = rejected(path.read_bytes()[:300], "deck.pptx")
    assert error.reason == "malformed"
    assert error.detail.startswith("PPTX is not a valid ZIP container")
    assert rejected(b"hello, not a zip", "letter.docx").reason == "malformed"


def test_office_file_is_recognised_by_content_when_the_extension_is_unknown(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("found by its content")
    path = tmp_path / "letter.bin"
    document.save(str(path))
    assert parse_document(path.read_bytes(), path.name).text == "found by its content"


# --- e-mail ----------------------------------------------------------------------------------------------


def email_bytes(*, plain: str | None, html: str | None) -> bytes:
    message = EmailMessage()
    message["Subject"] = "Quarterly numbers"
    message["From"] = "Ana <ana@example.com>"
    message["To"] = "Bo <bo@example.com>"
    message["Date"] = "Mon, 02 Jun 2025 09:00:00 +0000"
    if plain is not None:
        message.set_content(plain)
    if html is not None:
        if plain is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="q2.pdf")
    return message.as_bytes()


def test_email_gives_headers_and_the_plain_text_body() -> None:
    parsed = parse_document(email_bytes(plain="Revenue grew.\n", html="<p>HTML copy</p>"), "mail.eml")
    assert parsed.sections[0].text == (
        "Subject: Quarterly numbers\nFrom: Ana <ana@example.com>\nTo: Bo <bo@example.com>\n"
        "Date: Mon, 02 Jun 2025 09:00:00 +0000"
    )
    assert [s.text for s in parsed.sections[1:]] == ["Revenue grew."]
    assert parsed.metadata["attachments"] == "q2.pdf"
    assert {s.heading for s in parsed.sections} == {"Quarterly numbers"}


def test_email_with_only_html_is_converted_to_text() -> None:
    parsed = parse_document(
        email_bytes(plain=None, html="<p>Only <b>HTML</b></p><script>x()</script>"), "m.eml"
    )
    assert parsed.sections[-1].text == "Only HTML"


def test_email_without_headers_or_body_is_empty() -> None:
    error = rejected(b"X-Mailer: nothing\n\n \n", "blank.eml")
    assert error.reason == "empty"
    assert error.detail == "the e-mail has no Subject/From/To/Date headers and no text body (21 bytes)"


# --- unsupported ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "detail"),
    [
        pytest.param(
            b"\x7fELF\x02\x01\x01" + bytes(200),
            "tool.exe",
            "binary file of unknown type (extension '.exe')",
            id="binary",
        ),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(64), "scan", "image file (no extension)", id="image"),
        pytest.param(
            b"\xd0\xcf\x11\xe0" + bytes(64), "old.doc", "legacy binary Word (.doc)", id="legacy-doc"
        ),
        pytest.param(
            b"key = 1\n", "settings.toml", "extension '.toml' is not a supported document type", id="text-ext"
        ),
        pytest.param(
            b"PK\x03\x04" + bytes(40),
            "bundle.zip",
            "ZIP container (extension '.zip') cannot be opened",
            id="zip",
        ),
    ],
)
def test_unknown_types_are_rejected_naming_the_type(data: bytes, name: str, detail: str) -> None:
    error = rejected(data, name)
    assert error.reason in ("unsupported", "malformed")
    assert detail in error.detail
