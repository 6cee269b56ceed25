"""Where a knowledge base's catalog and its vector index disagree, in a person's words.

The catalog records every chunk of every ``indexed`` document version (id = the index's primary key); the
index should hold exactly those. ``compare_chunk_ids`` takes both sides as chunk id → document URI and
keeps only the differences, so comparing 100k chunks holds the catalog's ids and one set, not two copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_NAMED_DOCUMENTS = 5


@dataclass(frozen=True)
class IndexDrift:
    """The chunks recorded in the catalog but missing from the index, and the index's orphans (chunks the
    catalog does not record as indexed), each as chunk id → document URI."""

    catalog_chunks: int
    index_chunks: int
    missing: dict[str, str] = field(default_factory=dict)
    orphans: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.orphans

    @property
    def documents_missing_chunks(self) -> list[str]:
        """Documents the catalog says are indexed whose chunks the index lacks (some or all)."""
        return sorted(set(self.missing.values()))

    @property
    def documents_with_orphans(self) -> list[str]:
        return sorted(set(self.orphans.values()))


def compare_chunk_ids(catalog: Mapping[str, str], index: Iterable[tuple[str, str]]) -> IndexDrift:
    """Compare the catalog's indexed chunks (id → URI) with the ``(id, URI)`` pairs the index yields."""
    found: set[str] = set()
    orphans: dict[str, str] = {}
    index_chunks = 0
    for chunk_id, uri in index:
        index_chunks += 1
        if chunk_id in catalog:
            found.add(chunk_id)
        else:
            orphans[chunk_id] = uri
    missing = {chunk_id: uri for chunk_id, uri in catalog.items() if chunk_id not in found}
    return IndexDrift(len(catalog), index_chunks, missing, orphans)


def describe_drift(kb: str, drift: IndexDrift, source_uri: str | None) -> list[str]:
    """Lines for a person: agreement in one line, or what differs, which documents, and how to repair."""
    if drift.ok:
        return [f"knowledge base {kb!r}: the catalog and the index agree ({drift.catalog_chunks:,} chunks)"]
    lines = [
        f"knowledge base {kb!r} has drifted from its index: the catalog records {drift.catalog_chunks:,} "
        f"indexed chunks, the index holds {drift.index_chunks:,}"
    ]
    if drift.missing:
        documents = drift.documents_missing_chunks
        lines.append(
            f"{len(drift.missing):,} chunk(s) in the catalog are missing from the index, of "
            f"{len(documents):,} document(s): {_named(documents)}"
        )
    if drift.orphans:
        documents = drift.documents_with_orphans
        lines.append(
            f"{len(drift.orphans):,} chunk(s) in the index are not in the catalog (orphans), of "
            f"{len(documents):,} document(s): {_named(documents)}"
        )
    lines.append(
        f"to repair: ods kb verify {kb} --repair (deletes the orphans and marks the documents missing "
        f"chunks deleted), then ods kb ingest {source_uri or 'SOURCE'} --kb {kb} (indexes them again)"
    )
    return lines


def _named(documents: list[str]) -> str:
    shown = ", ".join(documents[:_NAMED_DOCUMENTS])
    more = len(documents) - _NAMED_DOCUMENTS
    return f"{shown} and {more:,} more" if more > 0 else shown
