"""What an ingest run must do to bring a knowledge base in line with its source.

The listing's ETag (object store) or size+mtime (local folder) is only a cheap hint: a document whose hint
is unchanged is skipped without being read; one whose hint changed is read and hashed, and only a new
sha256 is re-parsed and re-embedded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ods.domain.hashing import sha256_bytes

T = TypeVar("T")

DOCUMENTS_PER_BATCH = 128
"""Documents per ingest task by default: large enough that per-batch costs (opening the index, sealing
it, one delete call, three task runs) are ~1% of the work, small enough that the three batches in flight
(parsing, embedding, indexing) hold a few MB."""


@dataclass(frozen=True)
class ListedDocument:
    """One document as the source lists it.

    ``name_problem`` says why the document's name cannot be used (a control character, bytes that are
    not UTF-8, too long); such a document is quarantined without being read, under ``uri`` built from the
    name's printable form.
    """

    uri: str
    etag: str
    size: int
    name_problem: str | None = None


@dataclass(frozen=True)
class KnownDocument:
    """What the catalog recorded for a document's current version."""

    uri: str
    sha256: str | None
    etag: str | None
    status: str


@dataclass(frozen=True)
class SyncPlan:
    """Documents to read and hash, documents to leave alone, and documents gone from the source."""

    to_read: list[ListedDocument] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    to_delete: list[str] = field(default_factory=list)


def plan_sync(listed: Iterable[ListedDocument], known: Iterable[KnownDocument]) -> SyncPlan:
    """Compare the source listing with the catalog (both keyed by URI); deterministic order."""
    known_by_uri = {document.uri: document for document in known}
    plan = SyncPlan()
    seen: set[str] = set()
    for document in sorted(listed, key=lambda item: item.uri):
        if document.uri in seen:
            continue
        seen.add(document.uri)
        previous = known_by_uri.get(document.uri)
        if previous is not None and previous.status != "deleted" and previous.etag == document.etag:
            plan.unchanged.append(document.uri)
        else:
            plan.to_read.append(document)
    plan.to_delete.extend(
        sorted(
            uri for uri, document in known_by_uri.items() if uri not in seen and document.status != "deleted"
        )
    )
    return plan


def pipeline_batches(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in batches of ``size`` for a parse → embed → index pipeline, with a small first and last batch.

    While the first batch is parsed nothing can be embedded, and while the last one is indexed nothing is
    left to embed: a batch of ``size // 8`` at each end shortens both waits (the embedding model is the
    bottleneck the rest overlaps with). Order is kept; ``size`` must be at least 1.
    """
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    edge = max(size // 8, 1)
    if len(items) <= 2 * edge:
        return [list(items[start : start + size]) for start in range(0, len(items), size)]
    head, middle, tail = items[:edge], items[edge:-edge], items[-edge:]
    return [
        list(head),
        *(list(middle[start : start + size]) for start in range(0, len(middle), size)),
        list(tail),
    ]


def needs_indexing(known: KnownDocument | None, sha256: str) -> bool:
    """Whether content ``sha256`` must be parsed and embedded (a touched but identical file need not)."""
    return known is None or known.sha256 != sha256 or known.status == "deleted"


def unread_version_key(etag: str) -> str:
    """The version key the catalog records for a document quarantined without being read.

    A document over the byte limit or with an unusable name is never read, so it has no content hash;
    its version is keyed by the listing's change hint instead (a sha256 of a tagged form of it, so it fits
    the column). The same listing gives the same key, so a re-run records nothing new; a changed object
    is a new version.
    """
    return sha256_bytes(f"ods-unread-document\0{etag}".encode())
