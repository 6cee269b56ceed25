"""Compare a knowledge base's catalog with its vector index, and repair what differs (``ods kb verify``,
``ods doctor --deep``).

The catalog's chunks of ``indexed`` versions are what the collection should hold, id for id. Drift comes
from writes behind ods's back (another Milvus client, a restored backup), or from catalogs written before
migration 0004, which left replaced versions ``indexed``. The index is read page by page (ids and URIs
only); the catalog's side is one query.
"""

from __future__ import annotations

from dataclasses import dataclass

from ods.adapters.catalog import Catalog
from ods.adapters.vectors import MilvusVectorIndex
from ods.domain.index_drift import IndexDrift, compare_chunk_ids, describe_drift
from ods.ingestion import open_index
from ods.preparation import open_catalog
from ods.settings import Settings


@dataclass(frozen=True)
class Verification:
    """What ``verify_knowledge_base`` found, and what it repaired (when asked to)."""

    kb: str
    source_uri: str | None
    drift: IndexDrift
    orphans_deleted: int = 0
    documents_reset: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The finding in a person's words, then what the repair did and what to run next."""
        lines = describe_drift(self.kb, self.drift, self.source_uri)
        if self.orphans_deleted or self.documents_reset:
            lines = lines[:-1]  # the repair was done: say what it did instead of how to do it
            lines.append(
                f"repaired: {self.orphans_deleted:,} orphan chunk(s) deleted from the index, "
                f"{len(self.documents_reset):,} document(s) marked deleted; run ods kb ingest "
                f"{self.source_uri or 'SOURCE'} --kb {self.kb} to index them again"
            )
        return lines


def verify_knowledge_base(settings: Settings, kb: str, *, repair: bool = False) -> Verification:
    """Compare ``kb``'s catalog with its index; with ``repair``, make them agree (see ``repair_drift``)."""
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
        index = open_index(settings, record)
        try:
            drift = find_drift(catalog, index, kb)
            if not repair or drift.ok:
                return Verification(kb, record.source_uri, drift)
            deleted, reset = repair_drift(catalog, index, kb, drift)
            return Verification(kb, record.source_uri, drift, deleted, tuple(reset))
        finally:
            index.close()


def find_drift(catalog: Catalog, index: MilvusVectorIndex, kb: str) -> IndexDrift:
    """The differences between the catalog's indexed chunk ids of ``kb`` and the ids its index holds."""
    return compare_chunk_ids(catalog.indexed_chunk_ids(kb), index.chunk_ids())


def repair_drift(
    catalog: Catalog, index: MilvusVectorIndex, kb: str, drift: IndexDrift
) -> tuple[int, list[str]]:
    """Delete the orphans from the index; delete what is left of each document missing chunks from the
    index and mark it deleted in the catalog, so the next ingest reads and indexes it again (a document
    marked deleted counts as new). Returns (orphans deleted, documents marked).

    The index is written first: a repair stopped half-way leaves drift the next verify finds again.
    """
    index.delete_ids(sorted(drift.orphans))
    documents = drift.documents_missing_chunks
    reason = "chunks were missing from the index (ods kb verify --repair); the next ingest indexes it again"
    for uri in documents:
        index.delete_document(uri)
        catalog.mark_document_deleted(kb, uri, reason=reason)
    if drift.orphans or documents:
        index.flush()
    return len(drift.orphans), documents
