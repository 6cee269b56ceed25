"""Knowledge bases, their documents (one per source URI), document versions (by sha256) and chunks.

The chunks of ``indexed`` versions are exactly what the knowledge base's collection in the vector index
holds (``ods kb verify`` compares the two); replaced versions become ``superseded`` once their chunks
left the index, and their chunk rows stay so old citations still resolve.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from ods.adapters.catalog.base import (
    CatalogBase,
    add_row,
    check_choice,
    parts,
    require_named,
    require_rows,
    to_record,
    values_of,
)
from ods.adapters.catalog.records import (
    ChunkRecord,
    ChunkSource,
    DocumentRecord,
    IndexedDocument,
    KnowledgeBaseCounts,
    KnowledgeBaseRecord,
    ReplacedVersion,
)
from ods.adapters.catalog.schema import (
    Chunk,
    Document,
    DocumentStatus,
    DocumentVersion,
    KnowledgeBase,
    utcnow,
)
from ods.domain.names import check_name
from ods.errors import CatalogError, NotFoundError


class KnowledgeTables(CatalogBase):
    """``knowledge_bases``, ``documents``, ``document_versions`` and ``chunks``."""

    def ensure_knowledge_base(
        self,
        name: str,
        *,
        embedding_model: str,
        embedding_dim: int,
        collection_name: str,
        source_uri: str | None = None,
        description: str | None = None,
        tenant: str | None = None,
        owner: str | None = None,
    ) -> KnowledgeBaseRecord:
        """The knowledge base ``name``, created if missing (as ``tenant``'s, else the catalog's tenant's,
        owned by ``owner``); a given ``source_uri`` or ``description`` replaces the stored one.

        An existing knowledge base indexed with another embedding model, dimension or collection is an
        error: its vectors would not match the new model.
        """
        check_name("knowledge base", name)
        index = {  # what the knowledge base's vectors depend on: fixed once it exists
            "embedding_model": embedding_model,
            "embedding_dim": embedding_dim,
            "collection_name": collection_name,
        }

        def work(session: Session) -> KnowledgeBaseRecord:
            owner_tenant = tenant or self.tenant
            query = select(KnowledgeBase).where(
                KnowledgeBase.name == name, KnowledgeBase.tenant == owner_tenant
            )
            base = session.scalar(query)
            if base is None:
                row = KnowledgeBase(
                    name=name,
                    source_uri=source_uri,
                    description=description,
                    tenant=owner_tenant,
                    owner=owner or self.creator,
                    **index,
                )
                return _kb_record(add_row(session, row))
            if {key: getattr(base, key) for key in index} != index:
                raise CatalogError(
                    f"knowledge base {name!r} is indexed with {base.embedding_model} ({base.embedding_dim} dims) "
                    f"in collection {base.collection_name!r}, not {embedding_model} ({embedding_dim} dims) in "
                    f"{collection_name!r}; use the same embedding model or a new knowledge base name"
                )
            if source_uri is not None and base.source_uri != source_uri:
                base.source_uri = source_uri
            if description is not None and base.description != description:
                base.description = description
            session.flush()
            return _kb_record(base)

        return self._write(work)

    def get_knowledge_base(self, name: str) -> KnowledgeBaseRecord:
        """The knowledge base called ``name``."""
        return self._read(lambda session: _kb_record(_knowledge_base(session, name, self.tenant)))

    def list_knowledge_bases(self, *, tenant: str | None = None) -> list[KnowledgeBaseRecord]:
        """Every knowledge base (of ``tenant`` when given), by name."""
        return self._list_named(KnowledgeBase, lambda _session, row: _kb_record(row), tenant)

    def record_document_version(
        self,
        kb: str,
        uri: str,
        sha256: str,
        *,
        etag: str | None,
        status: DocumentStatus,
        reason: str | None = None,
        chunk_count: int = 0,
        parser: str | None = None,
        timings: dict[str, Any] | None = None,
    ) -> DocumentRecord:
        """Record that document ``uri`` of knowledge base ``kb`` now has content ``sha256``.

        Upsert by (document, sha256): the version's etag, status, reason, chunk count, parser and timings
        are replaced, and it becomes the document's current version.
        """
        check_choice("document status", status, DocumentStatus)

        def work(session: Session) -> DocumentRecord:
            base = _knowledge_base(session, kb, self.tenant)
            document = session.scalar(select(Document).where(Document.kb_id == base.id, Document.uri == uri))
            if document is None:
                document = add_row(session, Document(kb_id=base.id, uri=uri, status=status))
            version = session.scalar(
                select(DocumentVersion).where(
                    DocumentVersion.document_id == document.id, DocumentVersion.sha256 == sha256
                )
            )
            if version is None:
                version = DocumentVersion(document_id=document.id, sha256=sha256)
                session.add(version)
            version.etag, version.status, version.reason = etag, status, reason
            version.chunk_count, version.parser, version.timings = chunk_count, parser, timings
            session.flush()
            document.status = status
            document.current_version_id = version.id
            session.flush()
            return _document_record(base.name, document, version)

        return self._write(work)

    def documents(
        self, kb: str, status: DocumentStatus | None = None, *, uris: Sequence[str] | None = None
    ) -> list[DocumentRecord]:
        """The documents of knowledge base ``kb`` (optionally only those in ``status``, or of ``uris``), by URI."""
        if status is not None:
            check_choice("document status", status, DocumentStatus)
        wanted = None if uris is None else sorted(set(uris))

        def work(session: Session) -> list[DocumentRecord]:
            base = _knowledge_base(session, kb, self.tenant)
            query = (
                select(Document, DocumentVersion)
                .outerjoin(DocumentVersion, Document.current_version_id == DocumentVersion.id)
                .where(Document.kb_id == base.id)
                .order_by(Document.uri)
            )
            if status is not None:
                query = query.where(Document.status == status)
            if wanted is None:
                return [_document_record(base.name, doc, version) for doc, version in session.execute(query)]
            records = [
                _document_record(base.name, doc, version)
                for part in parts(wanted)
                for doc, version in session.execute(query.where(Document.uri.in_(part)))
            ]
            return sorted(records, key=lambda record: record.uri)

        return self._read(work)

    def mark_document_deleted(self, kb: str, uri: str, *, reason: str | None = None) -> DocumentRecord:
        """Mark document ``uri`` (and its current version) deleted, with ``reason`` when given; repeating
        it changes nothing. Called once all its chunks left the index: any older version still recorded
        ``indexed`` becomes ``superseded``."""

        def work(session: Session) -> DocumentRecord:
            base = _knowledge_base(session, kb, self.tenant)
            document = session.scalar(select(Document).where(Document.kb_id == base.id, Document.uri == uri))
            if document is None:
                raise NotFoundError(f"knowledge base {kb!r} has no document {uri!r}")
            version = None
            if document.current_version_id is not None:
                version = session.get(DocumentVersion, document.current_version_id)
            document.status = "deleted"
            if version is not None:
                version.status = "deleted"
                if reason is not None:
                    version.reason = reason
            session.flush()
            _supersede_replaced_versions(session, [document.id])
            return _document_record(base.name, document, version)

        return self._write(work)

    def add_chunks(self, document_version_id: int, chunks: Iterable[ChunkRecord]) -> int:
        """Record the chunks of a document version; chunks already recorded are skipped.

        Returns how many chunks were new.
        """
        listed = list(chunks)  # read once: a retried transaction sees the same chunks

        def work(session: Session) -> int:
            require_rows(
                session, DocumentVersion, DocumentVersion.id, [document_version_id], "document version"
            )
            return _add_new_chunks(session, {document_version_id: listed})

        return self._write(work)

    def record_indexed_documents(self, kb: str, documents: Sequence[IndexedDocument]) -> list[DocumentRecord]:
        """Record many indexed document versions, each its document's current one, and their chunks.

        The same as ``record_document_version(status="indexed")`` + ``add_chunks`` per document, in one
        transaction of a few set-wise statements (an ingest batch records hundreds of documents and
        thousands of chunks at a time). Chunks already recorded are skipped.
        """
        latest = {item.uri: item for item in documents}  # a URI listed twice: its last version wins

        def work(session: Session) -> list[DocumentRecord]:
            base = _knowledge_base(session, kb, self.tenant)
            uris = sorted(latest)
            existing = {
                document.uri: document
                for part in parts(uris)
                for document in session.scalars(
                    select(Document).where(Document.kb_id == base.id, Document.uri.in_(part))
                )
            }
            for uri in uris:
                if uri not in existing:
                    existing[uri] = Document(kb_id=base.id, uri=uri, status="indexed")
                    session.add(existing[uri])
            session.flush()
            wanted = {(existing[uri].id, latest[uri].sha256): uri for uri in uris}
            versions: dict[str, DocumentVersion] = {
                wanted[(version.document_id, version.sha256)]: version
                for part in parts([existing[uri].id for uri in uris])
                for version in session.scalars(
                    select(DocumentVersion).where(DocumentVersion.document_id.in_(part))
                )
                if (version.document_id, version.sha256) in wanted
            }
            for uri in uris:
                item = latest[uri]
                version = versions.get(uri)
                if version is None:
                    version = versions[uri] = DocumentVersion(
                        document_id=existing[uri].id, sha256=item.sha256
                    )
                    session.add(version)
                version.etag, version.status, version.reason = item.etag, "indexed", None
                version.chunk_count, version.parser, version.timings = len(item.chunks), item.parser, None
            session.flush()
            for uri in uris:
                existing[uri].status = "indexed"
                existing[uri].current_version_id = versions[uri].id
            session.flush()
            # The ingest deleted the other versions' chunks from the index just before (``index_batch``:
            # upsert, delete other versions, record): they are superseded in this same transaction.
            _supersede_replaced_versions(session, [existing[uri].id for uri in uris])
            _add_new_chunks(session, {versions[uri].id: latest[uri].chunks for uri in uris})
            return [_document_record(base.name, existing[uri], versions[uri]) for uri in uris]

        return self._write(work)

    def replaced_versions(self, kb: str) -> list[ReplacedVersion]:
        """The versions of ``kb`` still ``indexed`` that are not their document's current version.

        Their chunks may still be in the index: an ingest deletes them and then marks the versions
        superseded (``ods.stages.ingest.retire_replaced_versions``).
        """

        def work(session: Session) -> list[ReplacedVersion]:
            base = _knowledge_base(session, kb, self.tenant)
            current = aliased(DocumentVersion)
            rows = session.execute(
                select(
                    DocumentVersion.id, Document.uri, DocumentVersion.sha256, current.sha256, current.status
                )
                .join(Document, DocumentVersion.document_id == Document.id)
                .outerjoin(current, Document.current_version_id == current.id)
                .where(
                    Document.kb_id == base.id,
                    DocumentVersion.status == "indexed",
                    or_(
                        Document.current_version_id.is_(None),
                        Document.current_version_id != DocumentVersion.id,
                    ),
                )
                .order_by(Document.uri, DocumentVersion.id)
            ).all()
            return [
                ReplacedVersion(version_id, uri, sha256, current_sha256, current_status or "none")
                for version_id, uri, sha256, current_sha256, current_status in rows
            ]

        return self._read(work)

    def mark_versions_superseded(self, version_ids: Sequence[int]) -> int:
        """Mark these versions superseded (their chunks are gone from the index); only versions still
        ``indexed`` and not their document's current one change. Returns how many did."""
        wanted = sorted(set(version_ids))

        def work(session: Session) -> int:
            changed = 0
            for part in parts(wanted):
                current_ids = select(Document.current_version_id).where(
                    Document.current_version_id.is_not(None)
                )
                result = session.execute(
                    update(DocumentVersion)
                    .where(
                        DocumentVersion.id.in_(part),
                        DocumentVersion.status == "indexed",
                        DocumentVersion.id.not_in(current_ids),
                    )
                    .values(status="superseded", updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                changed += result.rowcount or 0  # type: ignore[attr-defined]
            return changed

        return self._write(work)

    def knowledge_base_counts(self, kb: str) -> KnowledgeBaseCounts:
        """Documents and versions of ``kb`` by status, and the chunk rows of its ``indexed`` versions."""

        def work(session: Session) -> KnowledgeBaseCounts:
            base = _knowledge_base(session, kb, self.tenant)
            documents = session.execute(
                select(Document.status, func.count())
                .where(Document.kb_id == base.id)
                .group_by(Document.status)
            ).all()
            versions = session.execute(
                select(DocumentVersion.status, func.count())
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Document.kb_id == base.id)
                .group_by(DocumentVersion.status)
            ).all()
            chunks = session.scalar(
                select(func.count())
                .select_from(Chunk)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Document.kb_id == base.id, DocumentVersion.status == "indexed")
            )
            return KnowledgeBaseCounts(
                documents={status: count for status, count in documents},
                versions={status: count for status, count in versions},
                indexed_chunks=int(chunks or 0),
            )

        return self._read(work)

    def indexed_chunk_ids(self, kb: str) -> dict[str, str]:
        """Chunk id → document URI for every chunk of ``kb``'s ``indexed`` versions: what its collection
        should hold, exactly (``ods kb verify`` compares the two)."""

        def work(session: Session) -> dict[str, str]:
            base = _knowledge_base(session, kb, self.tenant)
            uris: dict[str, str] = {}  # one string per URI, however many chunks share it
            rows = session.execute(
                select(Chunk.id, Document.uri)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Document.kb_id == base.id, DocumentVersion.status == "indexed")
                .execution_options(yield_per=10_000)
            )
            return {chunk_id: uris.setdefault(uri, uri) for chunk_id, uri in rows}

        return self._read(work)

    def chunk_sources(self, chunk_ids: Iterable[str]) -> dict[str, ChunkSource]:
        """Where each known chunk comes from (document URI, version, page, heading); unknown ids are absent.

        Answers cite chunks by id; this turns a citation back into something a person can open.
        """
        wanted = sorted(set(chunk_ids))

        def work(session: Session) -> dict[str, ChunkSource]:
            if not wanted:
                return {}
            rows = session.execute(
                select(Chunk, DocumentVersion.sha256, Document.uri)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Chunk.id.in_(wanted))
            ).all()
            return {
                chunk.id: to_record(ChunkSource, chunk, chunk_id=chunk.id, doc_uri=uri, doc_sha256=sha256)
                for chunk, sha256, uri in rows
            }

        return self._read(work)


def _supersede_replaced_versions(session: Session, document_ids: Sequence[int]) -> None:
    """Mark superseded every ``indexed`` version of these documents other than their current one.

    Called once the index no longer holds those versions' chunks; their chunk rows stay, so answers that
    cited them still resolve.
    """
    for part in parts(sorted(set(document_ids))):
        session.execute(
            update(DocumentVersion)
            .where(
                DocumentVersion.document_id.in_(part),
                DocumentVersion.status == "indexed",
                DocumentVersion.id
                != select(Document.current_version_id)
                .where(Document.id == DocumentVersion.document_id)
                .scalar_subquery(),
            )
            .values(status="superseded", updated_at=utcnow())
            # Versions loaded in this session keep their old status in memory; none is written again.
            .execution_options(synchronize_session=False)
        )


def _add_new_chunks(session: Session, chunks: dict[int, Sequence[ChunkRecord]]) -> int:
    """Insert the chunks (by document version id) not recorded yet, in one statement; how many were new.

    A chunk id listed twice is inserted once (its last listing).
    """
    version_ids = sorted(chunks)
    known = {
        chunk_id
        for part in parts(version_ids)
        for chunk_id in session.scalars(select(Chunk.id).where(Chunk.document_version_id.in_(part)))
    }
    new = {
        chunk.id: values_of(chunk) | {"document_version_id": version_id}
        for version_id, version_chunks in chunks.items()
        for chunk in version_chunks
        if chunk.id not in known
    }
    if new:
        session.execute(insert(Chunk), list(new.values()))
    session.flush()
    return len(new)


def _knowledge_base(session: Session, name: str, tenant: str) -> KnowledgeBase:
    return require_named(session, KnowledgeBase, "knowledge base", name, tenant)


def _kb_record(row: KnowledgeBase) -> KnowledgeBaseRecord:
    return to_record(KnowledgeBaseRecord, row)


_VERSION_FIELDS = ("sha256", "etag", "reason", "chunk_count", "parser", "timings")
"""The fields of a document's record that come from its current version."""


def _document_record(kb_name: str, document: Document, version: DocumentVersion | None) -> DocumentRecord:
    held: dict[str, Any]
    if version is None:
        held = dict.fromkeys(_VERSION_FIELDS) | {"version_id": None, "chunk_count": 0}
    else:
        held = {name: getattr(version, name) for name in _VERSION_FIELDS} | {"version_id": version.id}
    return to_record(DocumentRecord, document, kb_name=kb_name, **held)
