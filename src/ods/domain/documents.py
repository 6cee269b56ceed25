"""What a parsed document is, and why a document can be turned away (quarantined) instead.

Parsers in ``ods.adapters.documents.parsers`` produce these values; the chunker and the catalog consume
them. A quarantined document is recorded with one of ``QUARANTINE_REASONS`` and a detail a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from ods.errors import OdsError

QuarantineReason = Literal[
    "encrypted",
    "malformed",
    "empty",
    "no_text_layer",
    "unsupported",
    "too_large",
    "timeout",
    "memory_limit",
    "bad_name",
]
QUARANTINE_REASONS: frozenset[str] = frozenset(get_args(QuarantineReason))

ENCRYPTED: QuarantineReason = "encrypted"
MALFORMED: QuarantineReason = "malformed"
EMPTY: QuarantineReason = "empty"
NO_TEXT_LAYER: QuarantineReason = "no_text_layer"
UNSUPPORTED: QuarantineReason = "unsupported"
TOO_LARGE: QuarantineReason = "too_large"
TIMEOUT: QuarantineReason = "timeout"
MEMORY_LIMIT: QuarantineReason = "memory_limit"
BAD_NAME: QuarantineReason = "bad_name"


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading; ``page`` is the 1-based page or slide number where known."""

    text: str
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The text of one document, in reading order, as sections; ``parser`` names the format parser used."""

    sections: tuple[Section, ...]
    parser: str
    pages: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def char_count(self) -> int:
        """Characters of text in the sections, headings included (what a text limit is checked against)."""
        return sum(len(section.text) + len(section.heading or "") for section in self.sections)

    @property
    def text(self) -> str:
        """All sections as one string: each heading on its own line above its text, sections apart."""
        blocks = []
        for section in self.sections:
            block = section.text if section.heading is None else f"{section.heading}\n{section.text}"
            if block.strip():
                blocks.append(block.strip())
        return "\n\n".join(blocks)


class DocumentRejected(OdsError):
    """A document that cannot be turned into text; it is quarantined with ``reason`` and ``detail``.

    ``detail`` names the real cause ("encrypted PDF: a password is required (AES-256)"), so the person
    reading the quarantine list knows whether to supply a password, run OCR or fix the file.
    """

    def __init__(self, reason: QuarantineReason, detail: str, *, document: str | None = None) -> None:
        if reason not in QUARANTINE_REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}; use one of {sorted(QUARANTINE_REASONS)}")
        self.reason: QuarantineReason = reason
        self.detail = detail
        self.document = document
        where = f"{document}: " if document else ""
        super().__init__(f"{where}{detail} (quarantined as {reason})")

    def __reduce__(self) -> tuple[object, tuple[QuarantineReason, str, str | None]]:
        # Pickled across the parser-process boundary: rebuild from the fields, not from the message.
        return (_rebuild_rejected, (self.reason, self.detail, self.document))


def _rebuild_rejected(reason: QuarantineReason, detail: str, document: str | None) -> DocumentRejected:
    return DocumentRejected(reason, detail, document=document)
