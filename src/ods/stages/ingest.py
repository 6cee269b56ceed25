"""The stages of ingesting a knowledge base: plan → (read, parse, chunk, embed, index) per batch → delete.

Order of writes for a batch, chosen so a run killed at any point converges on the next one and no
document is ever absent from search: (1) upsert the new versions' chunks (in large calls), (2) delete the
chunks of other versions of those documents, (3) commit the new versions in the catalog. A crash before (3) leaves the catalog on
the old ETag, so the next run reads the document again; (1) and (2) are idempotent.

Verification (``ods kb verify``, ``ods doctor --deep``) compares a knowledge base's catalog with its vector
index and repairs what differs. The catalog's chunks of ``indexed`` versions are what the collection should
hold, id for id. Drift comes from writes behind ods's back (another Milvus client, a restored backup), or
from catalogs written before migration 0004, which left replaced versions ``indexed``. The index is read
page by page (ids and URIs only); the catalog's side is one query.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ods.adapters.catalog import KnowledgeCatalog
from ods.adapters.catalog.records import ChunkRecord, IndexedDocument, KnowledgeBaseRecord
from ods.adapters.documents.source import DocumentSource
from ods.adapters.milvus.client import is_server_uri
from ods.adapters.milvus.dense_snapshot import current_snapshot, lite_dense_index_type, snapshot_due
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.schema import ChunkRow, collection_name
from ods.adapters.milvus.sparse_snapshot import current_sparse_snapshot
from ods.adapters.models.embedder import Embedder
from ods.adapters.workers.parse_pool import DocumentParserPool, TextLimitExceeded
from ods.domain.chunking import chunk_id, chunk_sections
from ods.domain.documents import BAD_NAME, TOO_LARGE, DocumentRejected, ParsedDocument
from ods.domain.hashing import sha256_bytes
from ods.domain.index_drift import IndexDrift, compare_chunk_ids, describe_drift
from ods.domain.names import check_name
from ods.domain.sync_plan import (
    KnownDocument,
    ListedDocument,
    SyncPlan,
    needs_indexing,
    plan_sync,
    unread_version_key,
)
from ods.errors import NotFoundError
from ods.factories import build_embedder, open_catalog, open_index, snapshot_lite_file
from ods.settings import IngestSettings, Settings

MAX_CHUNK_TOKENS = 200
# Log records of the ingest tasks carry this attribute so a front end (``ods kb ingest``) can draw a
# progress bar without parsing messages: {"kb", "total", "done"} once planned, {"kb", "advance"} per batch.
PROGRESS_FIELD = "ods_progress"
OVERLAP_TOKENS = 30
UPSERT_ROWS = 1000
MIN_CHARS_PER_TOKEN = 6
"""Counting never goes below one token per 6 characters: WordPiece reads any 'word' over 100 characters as
a single [UNK], so a 400 KB line of base64 would otherwise pass as one small chunk."""
MAX_CHUNK_CHARS = MAX_CHUNK_TOKENS * MIN_CHARS_PER_TOKEN
"""So no chunk holds more than this many characters, and a text of N non-space characters makes at least
N / MAX_CHUNK_CHARS chunks: a document sure to exceed the chunk limit is refused before it is chunked."""
MAX_BYTES_SETTING = "ODS_INGEST__MAX_DOCUMENT_BYTES"
MAX_CHARS_SETTING = "ODS_INGEST__MAX_DOCUMENT_CHARS"
MAX_CHUNKS_SETTING = "ODS_INGEST__MAX_DOCUMENT_CHUNKS"
_LIMIT_IN_REASON = re.compile(r"over (ODS_INGEST__MAX_DOCUMENT_(?:BYTES|CHARS|CHUNKS))=([\d,]+);")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class DocumentLimits:
    """How large one document may be (``ODS_INGEST__MAX_DOCUMENT_*``); a larger one is quarantined as
    ``too_large`` with a reason naming the limit and its setting, before it is chunked or embedded."""

    max_bytes: int
    max_chars: int
    max_chunks: int

    @classmethod
    def from_settings(cls, settings: IngestSettings | None = None) -> DocumentLimits:
        """The limits configured in ``settings`` (the defaults without)."""
        settings = settings or IngestSettings()
        return cls(settings.max_document_bytes, settings.max_document_chars, settings.max_document_chunks)

    def over(self, measured: str, setting: str, *, document: str) -> DocumentRejected:
        """The rejection of a document whose ``measured`` size (a phrase) is over the limit of ``setting``."""
        limit = {
            MAX_BYTES_SETTING: self.max_bytes,
            MAX_CHARS_SETTING: self.max_chars,
            MAX_CHUNKS_SETTING: self.max_chunks,
        }[setting]
        return DocumentRejected(
            TOO_LARGE,
            f"{measured}, over {setting}={limit:,}; raise the limit or split the document",
            document=document,
        )

    def raised_since(self, reason: str | None) -> bool:
        """Whether a document quarantined for ``reason`` was over a limit that is now higher: read it again."""
        found = _LIMIT_IN_REASON.search(reason or "")
        if found is None:
            return False
        current = {
            MAX_BYTES_SETTING: self.max_bytes,
            MAX_CHARS_SETTING: self.max_chars,
            MAX_CHUNKS_SETTING: self.max_chunks,
        }[found.group(1)]
        return current > int(found.group(2).replace(",", ""))


STAGES = ("read", "parse", "embed", "index")
"""The stages of a batch, as its report's ``seconds`` names them."""


@dataclass
class BatchReport:
    """What one batch of documents came to."""

    indexed: int = 0
    reused: int = 0
    quarantined: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


@dataclass(frozen=True)
class IngestBatches:
    """A sync plan cut into the batches an ingest run reads, parses, embeds and indexes in turn."""

    batches: list[list[ListedDocument]]
    unchanged: int
    """Documents the plan leaves as they are (not read)."""
    to_delete: list[str]
    """URIs of documents gone from the source."""
    progress_id: str
    """Id of the Prefect progress artifact the indexed batches advance."""


class IngestSummary(BaseModel):
    """What an ingest run did: the ingest-documents flow's result (and, less its quarantined documents,
    the payload of its ods.kb.updated event)."""

    model_config = ConfigDict(frozen=True)

    kb: str
    source: str
    indexed: int = Field(description="Documents whose new version was indexed.")
    chunks: int = Field(description="Chunks written for them.")
    unchanged: int = Field(description="Documents left as they were (not read, or read and identical).")
    quarantined: int = Field(description="Documents quarantined (see quarantined_documents).")
    deleted: int = Field(description="Documents gone from the source, whose chunks were deleted.")
    seconds: dict[str, float] = Field(description="Seconds spent per stage: read, parse, embed, index.")
    quarantined_documents: list[dict[str, str]] = Field(
        description="Each quarantined document's uri, reason and detail."
    )

    @property
    def changed_anything(self) -> bool:
        """Whether the run indexed, deleted or quarantined a document (then ods.kb.updated is emitted)."""
        return bool(self.indexed or self.deleted or self.quarantined)

    def event_payload(self) -> dict[str, Any]:
        """The ods.kb.updated payload: the counts, without the quarantined documents' list."""
        return self.model_dump(mode="json", exclude={"quarantined_documents"})


def summarize_ingest(
    kb: str, source: str, unchanged: int, reports: Sequence[BatchReport], deleted: int
) -> IngestSummary:
    """Add up the batches' reports of one run (``unchanged``: documents the plan did not read)."""
    return IngestSummary(
        kb=kb,
        source=source,
        indexed=sum(report.indexed for report in reports),
        chunks=sum(report.chunks for report in reports),
        unchanged=unchanged + sum(report.reused for report in reports),
        quarantined=sum(len(report.quarantined) for report in reports),
        deleted=deleted,
        seconds={stage: round(sum(report.seconds[stage] for report in reports), 3) for stage in STAGES},
        quarantined_documents=[item for report in reports for item in report.quarantined],
    )


def open_knowledge_base(
    catalog: KnowledgeCatalog,
    settings: Settings,
    kb: str,
    source_uri: str,
    *,
    description: str | None = None,
    tenant: str | None = None,
    owner: str | None = None,
) -> KnowledgeBaseRecord:
    """Record the knowledge base with its embedding model and collection (refuses a model change), and
    ``description`` when given; a new one belongs to ``tenant`` (else the catalog's, ``ODS_TENANT``) and
    is owned by ``owner`` (the API caller's subject).

    A knowledge base already recorded for the configured model is returned without loading the model,
    so a re-run over an unchanged source never pays for it. A name that breaks the naming rule is refused
    before anything is loaded or written, an existing knowledge base under such a name included.
    """
    check_name("knowledge base", kb)
    embedder = build_embedder(settings.embedding)
    try:
        existing = catalog.get_knowledge_base(kb)
    except NotFoundError:
        existing = None
    if existing is not None and existing.embedding_model == embedder.model_id:
        dimension, collection = existing.embedding_dim, existing.collection_name
    else:
        dimension = embedder.dimension
        collection = collection_name(kb, embedder.model_id, tenant or settings.tenant)
    return catalog.ensure_knowledge_base(
        kb,
        source_uri=source_uri,
        embedding_model=embedder.model_id,
        embedding_dim=dimension,
        collection_name=collection,
        description=description,
        tenant=tenant,
        owner=owner,
    )


def dense_snapshot_due(settings: Settings, record: KnowledgeBaseRecord) -> bool:
    """Whether the knowledge base's collection lacks a current dense snapshot or the sparse (BM25) one
    beside it (read from disk only)."""
    lite_file = snapshot_lite_file(settings)
    return lite_file is not None and snapshot_due(
        lite_file, record.collection_name, record.embedding_model, settings.milvus.analyzer
    )


def dense_search_source(settings: Settings, record: KnowledgeBaseRecord) -> str:
    """Where dense search for the knowledge base runs now, in words (read from disk; Milvus not opened)."""
    if is_server_uri(settings.milvus_uri):
        return "Milvus server (HNSW)"
    index_type = lite_dense_index_type(settings.milvus_uri, record.collection_name) or "no collection yet"
    lite_file = snapshot_lite_file(settings)
    if lite_file is None:
        return f"Milvus Lite ({index_type}; dense snapshot off: ODS_MILVUS__DENSE_SNAPSHOT=false)"
    snapshot = current_snapshot(lite_file, record.collection_name, record.embedding_model)
    if snapshot is None:
        return f"Milvus Lite ({index_type}; no current dense snapshot: the next ingest writes one)"
    return f"exact, from the dense snapshot ({snapshot.table.num_rows:,} chunks)"


def bm25_search_source(settings: Settings, record: KnowledgeBaseRecord) -> str:
    """Where BM25 search for the knowledge base runs now and with which analyzer, in words (read from disk;
    Milvus not opened: on a server, ``MilvusVectorIndex.analyzer`` names the collection's analyzer)."""
    if is_server_uri(settings.milvus_uri):
        return "Milvus server (the collection's analyzer)"
    lite_file = snapshot_lite_file(settings)
    if lite_file is None:
        return "Milvus Lite (standard analyzer; sparse snapshot off: ODS_MILVUS__DENSE_SNAPSHOT=false)"
    analyzer = settings.milvus.analyzer
    snapshot = current_snapshot(lite_file, record.collection_name, record.embedding_model)
    sparse = (
        current_sparse_snapshot(snapshot.path, snapshot.table.num_rows, analyzer)
        if snapshot is not None
        else None
    )
    if sparse is None:
        return "Milvus Lite (standard analyzer; no current sparse snapshot: the next ingest writes one)"
    return f"exact, from the sparse snapshot ({analyzer} analyzer, {sparse.rows:,} chunks)"


def known_documents(
    catalog: KnowledgeCatalog, kb: str, limits: DocumentLimits | None = None
) -> list[KnownDocument]:
    """The catalog's view of every document of ``kb``.

    With ``limits``, a document quarantined over a per-document limit that has been raised since is shown
    without its listing hint, so the plan reads it again although it did not change.
    """
    return [
        KnownDocument(
            uri=document.uri,
            sha256=document.sha256,
            etag=None if limits is not None and limits.raised_since(document.reason) else document.etag,
            status=document.status,
        )
        for document in catalog.documents(kb)
    ]


def plan_ingest(
    catalog: KnowledgeCatalog, kb: str, source: DocumentSource, limits: DocumentLimits | None = None
) -> SyncPlan:
    """List the source and compare it with the catalog (``limits``: the settings' defaults without)."""
    limits = limits or DocumentLimits.from_settings()
    return plan_sync(source.list(), known_documents(catalog, kb, limits))


@dataclass
class PendingDocument:
    """A parsed and chunked document version waiting to be embedded and indexed."""

    listed: ListedDocument
    sha256: str
    parser: str
    rows: list[ChunkRow]


@dataclass
class PreparedBatch:
    """A batch after reading, parsing and chunking: what to index, and what was reused or quarantined."""

    report: BatchReport
    pending: list[PendingDocument] = field(default_factory=list)

    @property
    def rows(self) -> list[ChunkRow]:
        """Every chunk of the batch, document by document."""
        return [row for document in self.pending for row in document.rows]

    def release(self) -> None:
        """Drop the chunks (texts and vectors) once the next stage has what it needs from them.

        A batch handed from task to task stays reachable from the task engine's reference cycles until
        Python's cyclic collector happens to run; released, it holds only its small report there, so an
        ingest's memory does not grow with the number of batches.
        """
        self.pending = []


def prepare_batch(
    *,
    catalog: KnowledgeCatalog,
    embedder: Embedder,
    pool: DocumentParserPool,
    source: DocumentSource,
    kb: str,
    documents: Iterable[ListedDocument],
    limits: DocumentLimits | None = None,
) -> PreparedBatch:
    """Read, parse and chunk a batch; record identical (touched) and quarantined documents right away.

    A document with an unusable name, or over ``limits`` (by default the settings' defaults), is
    quarantined as soon as that is known: before reading for a name or a listed size, in the parser
    process for its text, before chunking for the chunks it is sure to make, before embedding for the
    chunks it made.
    """
    limits = limits or DocumentLimits.from_settings()
    documents = list(documents)
    prepared = PreparedBatch(BatchReport())
    report = prepared.report
    recorded = {document.uri: document for document in catalog.documents(kb, uris=[d.uri for d in documents])}
    for listed in documents:
        name = listed.uri.rsplit("/", 1)[-1]
        unread = _refused_unread(listed, limits, name)
        if unread is not None:
            _quarantine(catalog, report, kb, listed, unread_version_key(listed.etag), unread)
            continue
        started = time.perf_counter()
        data = source.read(listed.uri, max_bytes=limits.max_bytes)
        report.seconds["read"] += time.perf_counter() - started
        if len(data) > limits.max_bytes:  # the listing gave a smaller size: it grew, or the server is wrong
            del data
            over = limits.over(
                f"more than {limits.max_bytes:,} bytes read (listed as {listed.size:,})",
                MAX_BYTES_SETTING,
                document=name,
            )
            _quarantine(catalog, report, kb, listed, unread_version_key(listed.etag), over)
            continue
        started = time.perf_counter()
        sha256 = sha256_bytes(data)
        report.seconds["read"] += time.perf_counter() - started
        previous = recorded.get(listed.uri)
        known = (
            None
            if previous is None
            else KnownDocument(previous.uri, previous.sha256, previous.etag, previous.status)
        )
        if (
            previous is not None
            and not needs_indexing(known, sha256)
            and not limits.raised_since(previous.reason)
        ):
            # Touched but identical: remember the new hint so the next run skips it without reading.
            catalog.record_document_version(
                kb,
                listed.uri,
                sha256,
                etag=listed.etag,
                status="indexed" if previous.status == "indexed" else "quarantined",
                reason=previous.reason,
                chunk_count=previous.chunk_count,
                parser=previous.parser,
                timings=previous.timings,
            )
            report.reused += 1
            continue
        started = time.perf_counter()
        try:
            parsed = pool.parse(data, name, max_chars=limits.max_chars)
        except TextLimitExceeded as over:
            report.seconds["parse"] += time.perf_counter() - started
            too_long = limits.over(f"extracted {over.chars:,} characters", MAX_CHARS_SETTING, document=name)
            _quarantine(catalog, report, kb, listed, sha256, too_long)
            continue
        except DocumentRejected as rejected:
            report.seconds["parse"] += time.perf_counter() - started
            _quarantine(catalog, report, kb, listed, sha256, rejected)
            continue
        finally:
            del data  # only the parsed text from here on
        fewest = _fewest_chunks(parsed, limits)
        if fewest > limits.max_chunks:
            report.seconds["parse"] += time.perf_counter() - started
            too_many = limits.over(
                f"would make at least {fewest:,} chunks (at most {MAX_CHUNK_CHARS:,} characters each)",
                MAX_CHUNKS_SETTING,
                document=name,
            )
            _quarantine(catalog, report, kb, listed, sha256, too_many, parser=parsed.parser)
            continue
        chunks = chunk_sections(
            parsed.sections,
            max_tokens=MAX_CHUNK_TOKENS,
            overlap_tokens=OVERLAP_TOKENS,
            count_tokens=lambda texts: bounded_token_counts(embedder, texts),
        )
        report.seconds["parse"] += time.perf_counter() - started
        if len(chunks) > limits.max_chunks:
            too_many = limits.over(f"makes {len(chunks):,} chunks", MAX_CHUNKS_SETTING, document=name)
            _quarantine(catalog, report, kb, listed, sha256, too_many, parser=parsed.parser)
            continue
        if not chunks:
            catalog.record_document_version(
                kb,
                listed.uri,
                sha256,
                etag=listed.etag,
                status="quarantined",
                reason="no text to index",
                parser=parsed.parser,
            )
            report.quarantined.append({"uri": listed.uri, "reason": "empty", "detail": "no text to index"})
            continue
        rows = [
            ChunkRow(
                id=chunk_id(kb, listed.uri, sha256, chunk.index),
                kb=kb,
                doc_uri=listed.uri,
                doc_sha256=sha256,
                chunk_index=chunk.index,
                text=chunk.text,
                vector=[],
                page=chunk.page,
                heading=chunk.heading,
            )
            for chunk in chunks
        ]
        prepared.pending.append(PendingDocument(listed, sha256, parsed.parser, rows))
    return prepared


def _refused_unread(listed: ListedDocument, limits: DocumentLimits, name: str) -> DocumentRejected | None:
    """Why ``listed`` is quarantined without being read (its name, its listed size), or None."""
    if listed.name_problem is not None:
        return DocumentRejected(BAD_NAME, listed.name_problem, document=name)
    if listed.size > limits.max_bytes:
        return limits.over(f"{listed.size:,} bytes", MAX_BYTES_SETTING, document=name)
    return None


def _fewest_chunks(parsed: ParsedDocument, limits: DocumentLimits) -> int:
    """A lower bound of the chunks ``parsed`` makes: its non-space characters over ``MAX_CHUNK_CHARS``."""
    if parsed.char_count <= limits.max_chunks * MAX_CHUNK_CHARS:
        return 0  # cannot be over the limit: not worth counting
    characters = sum(len(_WHITESPACE.sub("", section.text)) for section in parsed.sections)
    return -(-characters // MAX_CHUNK_CHARS)


def _quarantine(
    catalog: KnowledgeCatalog,
    report: BatchReport,
    kb: str,
    listed: ListedDocument,
    version: str,
    rejected: DocumentRejected,
    *,
    parser: str | None = None,
) -> None:
    """Record ``listed`` as quarantined (version key ``version``) for ``rejected``, in the catalog and report."""
    catalog.record_document_version(
        kb, listed.uri, version, etag=listed.etag, status="quarantined", reason=str(rejected), parser=parser
    )
    report.quarantined.append({"uri": listed.uri, "reason": rejected.reason, "detail": rejected.detail})


def embed_batch(prepared: PreparedBatch, embedder: Embedder) -> PreparedBatch:
    """The same batch with every chunk's vector filled in (one ``embed`` call for the whole batch)."""
    rows = prepared.rows
    if not rows:
        return prepared
    started = time.perf_counter()
    vectors = iter(embedder.embed([row.text for row in rows]))
    pending = [
        replace(document, rows=[_with_vector(row, next(vectors)) for row in document.rows])
        for document in prepared.pending
    ]
    report = replace(prepared.report, seconds=dict(prepared.report.seconds))
    report.seconds["embed"] += time.perf_counter() - started
    return PreparedBatch(report, pending)


def index_batch(
    *, catalog: KnowledgeCatalog, index: MilvusVectorIndex, kb: str, prepared: PreparedBatch
) -> BatchReport:
    """Write an embedded batch: upsert its chunks, delete other versions' chunks, then record it."""
    report = replace(
        prepared.report, quarantined=list(prepared.report.quarantined), seconds=dict(prepared.report.seconds)
    )
    rows = prepared.rows
    if not rows:
        return report
    started = time.perf_counter()
    for start in range(0, len(rows), UPSERT_ROWS):
        index.upsert(rows[start : start + UPSERT_ROWS])
    index.delete_other_versions({document.listed.uri: document.sha256 for document in prepared.pending})
    # Sealing each batch keeps Milvus Lite's in-memory write buffer small: unsealed, it grew with the
    # corpus (+470 MB at 20k chunks) and each batch's writes and deletes slowed as it grew.
    index.flush()
    catalog.record_indexed_documents(
        kb,
        [
            IndexedDocument(
                uri=document.listed.uri,
                sha256=document.sha256,
                etag=document.listed.etag,
                parser=document.parser,
                chunks=[
                    ChunkRecord(
                        id=row.id,
                        chunk_index=row.chunk_index,
                        page=row.page,
                        heading=row.heading,
                        char_count=len(row.text),
                    )
                    for row in document.rows
                ],
            )
            for document in prepared.pending
        ],
    )
    report.indexed += len(prepared.pending)
    report.chunks += len(rows)
    report.seconds["index"] += time.perf_counter() - started
    return report


def bounded_token_counts(embedder: Embedder, texts: list[str]) -> list[int]:
    """The embedder's token counts, raised to at least one token per ``MIN_CHARS_PER_TOKEN`` characters."""
    counts = embedder.count_tokens(texts)
    return [
        max(count, -(-len(text) // MIN_CHARS_PER_TOKEN)) for count, text in zip(counts, texts, strict=True)
    ]


def _with_vector(row: ChunkRow, vector: Any) -> ChunkRow:
    return replace(row, vector=vector)


def delete_documents(
    catalog: KnowledgeCatalog, index: MilvusVectorIndex, kb: str, uris: Iterable[str]
) -> int:
    """Remove the chunks of documents gone from the source and mark them deleted."""
    count = 0
    for uri in uris:
        index.delete_document(uri)
        catalog.mark_document_deleted(kb, uri)
        count += 1
    return count


def retire_replaced_versions(catalog: KnowledgeCatalog, index: MilvusVectorIndex, kb: str) -> int:
    """Delete from the index the chunks of versions the catalog still records ``indexed`` although their
    document has another current version, then mark those versions superseded; returns how many.

    ``index_batch`` does this for every document it writes; what it leaves is a document whose new
    version was quarantined (its old chunks were still searchable) and a run stopped between the index
    and the catalog. Index first, catalog second: a run stopped in between does it again next time.
    """
    replaced = catalog.replaced_versions(kb)
    if not replaced:
        return 0
    keep = {
        version.uri: version.current_sha256 for version in replaced if version.current_status == "indexed"
    }
    index.delete_other_versions({uri: sha256 for uri, sha256 in keep.items() if sha256 is not None})
    for uri in sorted({version.uri for version in replaced} - keep.keys()):
        index.delete_document(uri)  # its current version holds no chunks (quarantined or deleted)
    return catalog.mark_versions_superseded([version.version_id for version in replaced])


# -- verification: the catalog against the index --------------------------------------------------------


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


def find_drift(catalog: KnowledgeCatalog, index: MilvusVectorIndex, kb: str) -> IndexDrift:
    """The differences between the catalog's indexed chunk ids of ``kb`` and the ids its index holds."""
    return compare_chunk_ids(catalog.indexed_chunk_ids(kb), index.chunk_ids())


def repair_drift(
    catalog: KnowledgeCatalog, index: MilvusVectorIndex, kb: str, drift: IndexDrift
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
