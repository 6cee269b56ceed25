"""Bytes of one document to ``ParsedDocument`` sections, or ``DocumentRejected`` naming why not.

The format is chosen by file extension, then by magic bytes. Third-party parsers see untrusted bytes and
can raise anything, so each format converts their failures into ``malformed`` with the library's own
message. Hangs and runaway memory are not handled here: ``ods.adapters.workers.parse_pool`` runs this module
in a separate process. Keep its imports lean: it is what that worker process loads.
"""

from __future__ import annotations

import codecs
import email
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from pathlib import PurePosixPath
from typing import Any

from ods.domain.documents import (
    EMPTY,
    ENCRYPTED,
    MALFORMED,
    NO_TEXT_LAYER,
    TOO_LARGE,
    UNSUPPORTED,
    DocumentRejected,
    ParsedDocument,
    Section,
)

TEXT_EXTENSIONS = frozenset({".txt", ".text", ".log", ".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".rst"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
LEGACY_FORMATS = {
    ".doc": "legacy binary Word (.doc); save it as .docx",
    ".ppt": "legacy binary PowerPoint (.ppt); save it as .pptx",
    ".xls": "Excel workbook (.xls); tabular files belong in a dataset, not a knowledge base",
    ".xlsx": "Excel workbook (.xlsx); tabular files belong in a dataset, not a knowledge base",
    ".rtf": "RTF; save it as .docx or .txt",
    ".odt": "OpenDocument text (.odt); save it as .docx",
    ".msg": "Outlook message (.msg); save it as .eml",
}
HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
DROPPED_HTML_TAGS = ("script", "style", "noscript", "template", "title")
BLOCK_HTML_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
        "footer", "form", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
CODE_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
EMAIL_HEADERS = ("Subject", "From", "To", "Date")
EMAIL_SNIFF = re.compile(
    rb"^(?:Return-Path|Received|From|To|Subject|Date|MIME-Version|Message-ID):", re.I | re.M
)

Parser = Callable[[bytes, int], ParsedDocument]


def parse_document(data: bytes, name: str, *, max_pages: int = 2000) -> ParsedDocument:
    """Parse ``data`` (the bytes of the file called ``name``) into sections of text.

    Raises ``DocumentRejected`` with a quarantine reason and a detail naming the cause.
    """
    try:
        return _parser_for(data, name)(data, max_pages)
    except DocumentRejected as rejected:
        if rejected.document is None:
            raise DocumentRejected(rejected.reason, rejected.detail, document=name) from rejected.__cause__
        raise


def _parser_for(data: bytes, name: str) -> Parser:
    if not data.strip():
        what = "0 bytes" if not data else f"only whitespace ({len(data)} bytes)"
        raise DocumentRejected(EMPTY, f"the file is empty: {what}")
    suffix = PurePosixPath(name).suffix.lower()
    by_extension: dict[str, Parser] = {".pdf": _parse_pdf, ".docx": _parse_docx, ".pptx": _parse_pptx}
    if suffix in by_extension:
        return by_extension[suffix]
    if suffix == ".eml":
        return _parse_email
    if suffix in HTML_EXTENSIONS:
        return _parse_html
    if suffix in MARKDOWN_EXTENSIONS:
        return _parse_markdown
    if suffix in TEXT_EXTENSIONS:
        return _parse_text
    if suffix in LEGACY_FORMATS:
        raise DocumentRejected(UNSUPPORTED, f"{LEGACY_FORMATS[suffix]} is not a supported document format")
    return _parser_by_content(data, suffix)


def _parser_by_content(data: bytes, suffix: str) -> Parser:
    """Unknown or missing extension: decide by magic bytes."""
    head = data[:2048]
    shown = f"extension {suffix!r}" if suffix else "no extension"
    if b"%PDF-" in head[:1024]:
        return _parse_pdf
    if head.startswith(b"PK\x03\x04"):
        try:
            names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
        except zipfile.BadZipFile as error:
            raise DocumentRejected(MALFORMED, f"ZIP container ({shown}) cannot be opened: {error}") from error
        if "word/document.xml" in names:
            return _parse_docx
        if "ppt/presentation.xml" in names:
            return _parse_pptx
        raise DocumentRejected(UNSUPPORTED, f"ZIP archive ({shown}) that is neither DOCX nor PPTX")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise DocumentRejected(UNSUPPORTED, f"legacy OLE2 Office file ({shown}); save it as DOCX or PPTX")
    if any(
        head.startswith(magic) for magic in (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*")
    ):
        raise DocumentRejected(UNSUPPORTED, f"image file ({shown}); images need OCR, which is not enabled")
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return _parse_html
    if EMAIL_SNIFF.match(head.lstrip()):
        return _parse_email
    try:
        decode_text(data)
    except DocumentRejected as error:
        raise DocumentRejected(UNSUPPORTED, f"binary file of unknown type ({shown})") from error
    if suffix:
        raise DocumentRejected(
            UNSUPPORTED,
            f"{shown} is not a supported document type (the content is text: rename it to .txt to index it)",
        )
    return _parse_text


# --- text and encodings -------------------------------------------------------------------------------


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode text bytes: BOM, then a declared charset, then NUL-pattern UTF-16/32, strict UTF-8, detection.

    Returns the text (without BOM) and the encoding used. Raises ``DocumentRejected(malformed)`` for
    content that is not text in any encoding.
    """
    text, encoding = _decode_any(data, declared)
    if _looks_binary(text):
        raise DocumentRejected(
            MALFORMED, f"content decoded as {encoding} holds control characters: binary, not text"
        )
    return text, encoding


def _decode_any(data: bytes, declared: str | None) -> tuple[str, str]:
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return _decode_strict(data[len(bom) :], encoding), encoding
    candidates = [declared, _utf16_or_32_without_bom(data), "utf-8"]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            return data.decode(candidate), candidate
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise DocumentRejected(MALFORMED, "bytes are not text in any encoding charset-normalizer knows")
    best = matches[0]
    # Short Western text makes single-byte guesses wobble (cp1250, cp1257 for French or German); when
    # windows-1252, the web's legacy default, reads nearly as cleanly, take it. Cyrillic or Greek bytes
    # never list cp1252 as a candidate, so they keep their own code page.
    if any(m.chaos <= best.chaos + 0.2 and "cp1252" in m.could_be_from_charset for m in matches):
        return data.decode("cp1252", errors="replace"), "cp1252"
    return str(best), best.encoding


def _decode_strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DocumentRejected(MALFORMED, f"text has a {encoding} byte-order mark but {error}") from error


def _utf16_or_32_without_bom(data: bytes) -> str | None:
    """UTF-16/32 text without a BOM shows as NUL bytes at fixed positions; UTF-8 would accept the NULs."""
    sample = data[:4096]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    quads = len(sample) // 4 * 4

    def nul_share(offset: int, step: int, limit: int) -> float:
        positions = range(offset, limit, step)
        return sum(1 for i in positions if sample[i] == 0) / max(1, len(positions))

    if nul_share(0, 4, quads) > 0.9 and nul_share(1, 4, quads) > 0.9 and nul_share(3, 4, quads) < 0.5:
        return "utf-32-be"
    if nul_share(3, 4, quads) > 0.9 and nul_share(2, 4, quads) > 0.9 and nul_share(0, 4, quads) < 0.5:
        return "utf-32-le"
    even, odd = nul_share(0, 2, len(sample)), nul_share(1, 2, len(sample))
    if even > 0.3 and odd < 0.05:
        return "utf-16-be"
    if odd > 0.3 and even < 0.05:
        return "utf-16-le"
    return None


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    controls = sum(1 for char in sample if char < " " and char not in "\t\n\r\f\v")
    return controls > max(1, len(sample) // 100)


def _parse_text(data: bytes, max_pages: int) -> ParsedDocument:
    text, encoding = decode_text(data)
    if not text.strip():
        raise DocumentRejected(EMPTY, f"the file holds only whitespace ({len(data)} bytes, {encoding})")
    return ParsedDocument((Section(text.strip()),), parser="text", metadata={"encoding": encoding})


def _parse_markdown(data: bytes, max_pages: int) -> ParsedDocument:
    text, encoding = decode_text(data)
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []
    fence: str | None = None

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(body, heading=heading))
        lines.clear()

    for line in text.splitlines():
        fence_match = CODE_FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        elif fence is None and (match := ATX_HEADING.match(line)):
            flush()
            heading = (match.group(2) or "").strip() or None
            continue
        lines.append(line)
    flush()
    if not sections:
        raise DocumentRejected(EMPTY, "the Markdown file has headings only, no text")
    return ParsedDocument(tuple(sections), parser="markdown", metadata={"encoding": encoding})


# --- HTML ---------------------------------------------------------------------------------------------


def _parse_html(data: bytes, max_pages: int) -> ParsedDocument:
    meta = META_CHARSET.search(data[:4096])
    declared = meta.group(1).decode("ascii", "replace") if meta else None
    text, encoding = decode_text(data, declared)
    sections, title = html_to_sections(text)
    if not sections:
        raise DocumentRejected(EMPTY, "the HTML page has no visible text (only markup, scripts or styles)")
    metadata = {"encoding": encoding} | ({"title": title} if title else {})
    return ParsedDocument(tuple(sections), parser="html", metadata=metadata)


def html_to_sections(markup: str) -> tuple[list[Section], str | None]:
    """Visible text of an HTML page split at h1-h6; scripts, styles and comments dropped. Also the title."""
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, PreformattedString, Tag

    soup = BeautifulSoup(markup, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) or None if isinstance(title_tag, Tag) else None
    for tag in soup.find_all(DROPPED_HTML_TAGS):
        tag.decompose()
    sections: list[Section] = []
    heading: str | None = None
    parts: list[str] = []
    heading_tags: set[int] = set()

    def flush() -> None:
        body = _tidy_lines("".join(parts))
        if body:
            sections.append(Section(body, heading=heading))
        parts.clear()

    for element in soup.descendants:
        if isinstance(element, Tag):
            if element.name in HEADING_TAGS:
                flush()
                heading = element.get_text(" ", strip=True) or None
                heading_tags.add(id(element))
            elif element.name in BLOCK_HTML_TAGS:
                parts.append("\t" if element.name in ("td", "th") else "\n")
        elif (
            isinstance(element, NavigableString)
            and not isinstance(element, PreformattedString)  # comments, doctype, CDATA
            and not any(id(parent) in heading_tags for parent in element.parents)
        ):
            parts.append(str(element))
    flush()
    return sections, title


def _tidy_lines(text: str) -> str:
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# --- PDF ----------------------------------------------------------------------------------------------


def _page_error(error: Exception) -> str:
    """What went wrong on one page, in a line; pypdf's decompression limit is said in words."""
    from pypdf.errors import LimitReachedError

    text = f"{type(error).__name__}: {error}"
    if isinstance(error, LimitReachedError) and "decompress" in str(error):
        text += " (a compressed stream inflates past the parser's size limit: a decompression bomb?)"
    return text


def _page_failures(failed: list[tuple[int, str]]) -> str:
    """``pages 1-3: LimitReachedError: …; page 5: PdfReadError: …``: pages that failed alike grouped."""
    grouped: dict[str, list[int]] = {}
    for number, error in failed:
        grouped.setdefault(error, []).append(number)
    return "; ".join(f"{_page_numbers(numbers)}: {error}" for error, numbers in grouped.items())


def _page_numbers(numbers: list[int]) -> str:
    """``[1]`` → ``page 1``; ``[1, 2, 3, 7]`` → ``pages 1-3, 7``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    parts = [str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]
    return ("page " if len(numbers) == 1 else "pages ") + ", ".join(parts)


def _parse_pdf(data: bytes, max_pages: int) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:
        raise DocumentRejected(MALFORMED, f"not a PDF: no %PDF- header (starts with {data[:16]!r})")
    with _malformed_on_error("PDF cannot be read"):
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            cipher = _pdf_cipher(reader.trailer)
            try:
                opened = reader.decrypt("")
            except DependencyError as error:
                raise DocumentRejected(
                    ENCRYPTED, f"encrypted PDF ({cipher}) needs a crypto library: {error}"
                ) from error
            if not opened:
                raise DocumentRejected(ENCRYPTED, f"encrypted PDF: a password is required ({cipher})")
        page_count = len(reader.pages)
    if page_count == 0:
        raise DocumentRejected(EMPTY, "PDF has 0 pages")
    if page_count > max_pages:
        raise DocumentRejected(TOO_LARGE, f"PDF has {page_count} pages, more than the limit of {max_pages}")
    sections: list[Section] = []
    blank: list[int] = []
    failed: list[tuple[int, str]] = []
    image_pages = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = _tidy_pdf_text(page.extract_text() or "")
            image_pages += 0 if text else _page_has_images(page)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - one broken page costs that page, not the document
            failed.append((number, _page_error(error)))
            continue
        if text:
            sections.append(Section(text, page=number))
        else:
            blank.append(number)
    if not sections:
        if failed and len(failed) == page_count:
            raise DocumentRejected(MALFORMED, f"no PDF page could be read: {_page_failures(failed)[:500]}")
        plural = "page" if page_count == 1 else "pages"
        cause = (
            "scanned images? run OCR first" if image_pages else "no images either: blank or vector-only pages"
        )
        raise DocumentRejected(NO_TEXT_LAYER, f"PDF has {page_count} {plural} but no text layer ({cause})")
    metadata = _pdf_metadata(reader)
    if blank:
        metadata["pages_without_text"] = ",".join(map(str, blank))
    if failed:
        metadata["pages_failed"] = _page_failures(failed)[:500]
    if reader.is_encrypted:
        metadata["encryption"] = _pdf_cipher(reader.trailer) + ", opened with the empty password"
    return ParsedDocument(tuple(sections), parser="pdf", pages=page_count, metadata=metadata)


@contextmanager
def _malformed_on_error(what: str) -> Iterator[None]:
    """Any error inside becomes ``DocumentRejected(MALFORMED, "<what>: <error>")``; a rejection, and a
    MemoryError (the worker's memory cap, reported as such by the pool), pass as they are."""
    try:
        yield
    except (DocumentRejected, MemoryError):
        raise
    except Exception as error:
        raise DocumentRejected(MALFORMED, f"{what}: {type(error).__name__}: {error}") from error


def _tidy_pdf_text(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\x00", "").strip().splitlines())


def _page_has_images(page: Any) -> int:
    resources = page.get("/Resources")
    xobjects = resources.get_object().get("/XObject") if resources is not None else None
    if xobjects is None:
        return 0
    return int(any(obj.get_object().get("/Subtype") == "/Image" for obj in xobjects.get_object().values()))


def _pdf_cipher(trailer: Any) -> str:
    """A readable name of a PDF's standard-security cipher (RC4-128, AES-256, ...)."""
    try:
        encrypt = trailer["/Encrypt"].get_object()
        version = int(encrypt.get("/V", 0))
        length = int(encrypt.get("/Length", 40))
        methods = {
            str(crypt.get_object().get("/CFM")) for crypt in (encrypt.get("/CF") or {}).values()
        }  # fmt: skip
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - naming the cipher is best effort
        return "unknown cipher"
    if "/AESV3" in methods or version == 5:
        return "AES-256"
    if "/AESV2" in methods:
        return "AES-128"
    return f"RC4-{length if version > 1 else 40}"


def _pdf_metadata(reader: Any) -> dict[str, str]:
    try:
        info = reader.metadata
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a broken info dictionary costs the metadata, not the text
        return {}
    if not info:
        return {}
    fields = {"title": info.title, "author": info.author}
    return {key: str(value).strip() for key, value in fields.items() if value and str(value).strip()}


# --- Office ---------------------------------------------------------------------------------------------


def _open_office(data: bytes, kind: str, opener: Callable[[io.BytesIO], Any]) -> Any:
    with _malformed_on_error(f"{kind} cannot be opened"):
        try:
            return opener(io.BytesIO(data))
        except zipfile.BadZipFile as error:
            raise DocumentRejected(MALFORMED, f"{kind} is not a valid ZIP container: {error}") from error


def _parse_docx(data: bytes, max_pages: int) -> ParsedDocument:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = _open_office(data, "DOCX", docx.Document)
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(body, heading=heading))
        lines.clear()

    with _malformed_on_error("DOCX content cannot be read"):
        for block in document.iter_inner_content():
            if isinstance(block, Paragraph):
                text = block.text.strip()
                style = block.style.name if block.style is not None else ""
                if text and style and (style.startswith("Heading") or style == "Title"):
                    flush()
                    heading = text
                elif text:
                    lines.append(text)
            elif isinstance(block, Table):
                lines.extend(_docx_table_rows(block))
        flush()
        core = document.core_properties
        metadata = {key: value for key, value in (("title", core.title), ("author", core.author)) if value}
    if not sections:
        raise DocumentRejected(EMPTY, "the DOCX has no text in its paragraphs or tables")
    return ParsedDocument(tuple(sections), parser="docx", metadata=metadata)


def _docx_table_rows(table: Any) -> Iterable[str]:
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell is repeated once per grid column it spans
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            yield "\t".join(cells)


def _parse_pptx(data: bytes, max_pages: int) -> ParsedDocument:
    import pptx

    presentation = _open_office(data, "PPTX", pptx.Presentation)
    with _malformed_on_error("PPTX content cannot be read"):
        slides = list(presentation.slides)
        if len(slides) > max_pages:
            raise DocumentRejected(
                TOO_LARGE, f"PPTX has {len(slides)} slides, more than the limit of {max_pages}"
            )
        sections: list[Section] = []
        for number, slide in enumerate(slides, start=1):
            title_shape = slide.shapes.title
            title = title_shape.text_frame.text.strip() if title_shape is not None else ""
            texts = [text for text in _shape_texts(slide.shapes, skip=title_shape) if text]
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text.strip()
                texts += [notes] if notes else []
            if texts or title:
                sections.append(Section("\n".join(texts) or title, page=number, heading=title or None))
    if not slides:
        raise DocumentRejected(EMPTY, "PPTX has no slides")
    if not sections:
        raise DocumentRejected(NO_TEXT_LAYER, f"PPTX has {len(slides)} slides but no text (pictures only?)")
    return ParsedDocument(tuple(sections), parser="pptx", pages=len(slides))


def _shape_texts(shapes: Iterable[Any], skip: Any = None) -> Iterable[str]:
    for shape in shapes:
        if skip is not None and shape.shape_id == skip.shape_id:
            continue
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield shape.text_frame.text.strip()
        elif getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                yield "\t".join(" ".join(cell.text.split()) for cell in row.cells)
        elif hasattr(shape, "shapes"):  # a group shape
            yield from _shape_texts(shape.shapes)


# --- e-mail ---------------------------------------------------------------------------------------------


def _parse_email(data: bytes, max_pages: int) -> ParsedDocument:
    try:
        return _parse_email_message(data)
    except (DocumentRejected, MemoryError):
        raise
    except Exception as error:
        raise DocumentRejected(
            MALFORMED, f"e-mail cannot be read: {type(error).__name__}: {error}"
        ) from error


def _parse_email_message(data: bytes) -> ParsedDocument:
    message = email.message_from_bytes(data, policy=policy.default)
    if not isinstance(message, EmailMessage):
        raise DocumentRejected(MALFORMED, "e-mail cannot be parsed as a MIME message")
    headers = {field: str(message[field]).strip() for field in EMAIL_HEADERS if message[field]}
    plain = [_email_part_text(part) for part in _email_parts(message, "text/plain")]
    bodies = [text.strip() for text in plain if text.strip()]
    if not bodies:
        for part in _email_parts(message, "text/html"):
            sections, _ = html_to_sections(_email_part_text(part))
            bodies += [section.text for section in sections]
    if not headers and not bodies:
        raise DocumentRejected(
            EMPTY, f"the e-mail has no Subject/From/To/Date headers and no text body ({len(data)} bytes)"
        )
    header_block = "\n".join(f"{field}: {value}" for field, value in headers.items())
    subject = headers.get("Subject")
    sections_out = [Section(header_block, heading=subject)] if header_block else []
    sections_out += [Section(body, heading=subject) for body in bodies]
    attachments = [part.get_filename() or "" for part in message.iter_attachments()]
    metadata = {key.lower(): value for key, value in headers.items()}
    if any(attachments):
        metadata["attachments"] = ", ".join(name for name in attachments if name)
    return ParsedDocument(tuple(sections_out), parser="email", metadata=metadata)


def _email_parts(message: EmailMessage, content_type: str) -> Iterable[EmailMessage]:
    for part in message.walk():
        if (
            isinstance(part, EmailMessage)
            and part.get_content_type() == content_type
            and part.get_content_disposition() != "attachment"
        ):
            yield part


def _email_part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError):
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return ""
        try:
            return decode_text(payload)[0]
        except DocumentRejected:
            return ""
    return content if isinstance(content, str) else ""
