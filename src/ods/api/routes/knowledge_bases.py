"""``/api/v1/knowledge-bases``: knowledge bases, their documents, and search (dense, BM25 or hybrid);
creating one, uploading documents to it and deleting them.

A knowledge base created here takes its documents from the object store, under the watched documents
prefix (``docs/<kb>/`` by default, ``ODS_WATCH__DOCUMENTS_PREFIX``): where the bucket watcher and the
webhook bridge expect them, so `ods kb ingest`, the sync-knowledge-bases flow and the server all read the
same source. An upload writes the file there and a delete removes it; then a background run (see
``ods.api.background``) syncs the knowledge base, and its id is the answer (HTTP 202).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Path, Query, UploadFile
from pydantic import BaseModel, Field, field_validator

from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.adapters.milvus.schema import MAX_HEADING_BYTES
from ods.adapters.object_store import ObjectStore, key_of
from ods.api.background import ServerRuns
from ods.api.deps import ServerResources, checked
from ods.api.envelope import ConflictError, Envelope, ErrorEnvelope, bad_input_response, ok
from ods.api.quotas import ServerQuotas
from ods.api.routes.runs import Run, run_view
from ods.api.tenancy import CallerSubject, CallerTenant, name_taken, owned_knowledge_base
from ods.api.views import view_of
from ods.domain.hashing import sha256_bytes
from ods.domain.names import check_name
from ods.domain.object_keys import document_name_problem, printable_name
from ods.domain.tenant_storage import knowledge_base_documents_prefix
from ods.errors import NotFoundError, OdsError
from ods.factories import build_object_store
from ods.stages.ingest import open_knowledge_base
from ods.stages.retrieve import (
    MAX_HEADING_FILTERS,
    MAX_PAGE_FILTERS,
    describe_fusion,
    search_conditions,
    search_index,
)
from ods.stages.watch import uri_resolver, watch_layout

router = APIRouter(prefix="/api/v1/knowledge-bases", tags=["knowledge bases"])

MAX_TOP_K = 100


class KnowledgeBase(BaseModel):
    name: str
    description: str | None = Field(description="What it holds, as given when it was created.")
    source_uri: str | None = Field(description="The folder or s3:// prefix it was ingested from.")
    embedding_model: str
    embedding_dim: int
    collection_name: str
    created_at: datetime


class KnowledgeBaseStatus(KnowledgeBase):
    documents: dict[str, int] = Field(description="Documents per status (indexed, quarantined, deleted).")
    versions: dict[str, int] = Field(description="Document versions per status.")
    indexed_chunks: int = Field(description="Chunks of indexed versions, which the index holds too.")
    analyzer: str = Field(
        description="The analyzer BM25 search applies now: 'english' (stemmed words, English stop words "
        "dropped) or 'standard' (lowercased words)."
    )
    fusion: str = Field(description="How hybrid search fuses the dense and BM25 lists (ODS_SEARCH__*).")


class Document(BaseModel):
    id: int
    uri: str
    status: Literal["indexed", "quarantined", "deleted"]
    reason: str | None = Field(description="Why a document was quarantined or deleted.")
    chunk_count: int
    parser: str | None
    sha256: str | None = Field(description="Content hash of its current version.")
    updated_at: datetime


class DocumentList(BaseModel):
    knowledge_base: str
    items: list[Document]


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000, description="What to look for, in plain words.")
    mode: Literal["dense", "bm25", "hybrid"] = Field(
        default="hybrid", description="dense (meaning), bm25 (words) or hybrid (both, fused by rank)."
    )
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="How many chunks.")
    min_score: float | None = Field(default=None, description="Drop hits scoring below this.")
    documents: list[str] | None = Field(
        default=None,
        max_length=50,
        description="Search only these documents (URIs or file names); with headings or pages, all must hold.",
    )
    headings: list[str] | None = Field(
        default=None,
        max_length=MAX_HEADING_FILTERS,
        description=(
            "Search only chunks under one of these section headings (exact match, as hits show them; "
            f"each at most {MAX_HEADING_BYTES:,} bytes)."
        ),
    )
    pages: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None,
        max_length=MAX_PAGE_FILTERS,
        description="Search only chunks on one of these pages (PDF pages, from 1; other documents have none).",
    )

    @field_validator("headings")
    @classmethod
    def _headings_fit(cls, value: list[str] | None) -> list[str] | None:
        for heading in value or ():
            if len(heading.encode("utf-8")) > MAX_HEADING_BYTES:
                raise ValueError(f"a heading is at most {MAX_HEADING_BYTES:,} bytes (UTF-8)")
        return value


class SearchHit(BaseModel):
    rank: int
    score: float
    chunk_id: str
    doc_uri: str
    page: int | None
    heading: str | None
    text: str


class SearchResult(BaseModel):
    knowledge_base: str
    mode: str
    hits: list[SearchHit]
    best_similarity: float | None = Field(
        description="Cosine of the closest chunk in meaning (null for bm25): how relevant the best hit is."
    )


def _knowledge_base(record: KnowledgeBaseRecord) -> KnowledgeBase:
    return KnowledgeBase.model_validate(record, from_attributes=True)


@router.get("", summary="List knowledge bases", response_model=Envelope[list[KnowledgeBase]])
def list_knowledge_bases(resources: ServerResources, tenant: CallerTenant) -> Envelope[list[KnowledgeBase]]:
    """Every knowledge base of the caller's tenant, by name."""
    records = resources.catalog.for_tenant(tenant).list_knowledge_bases(tenant=tenant)
    return ok([_knowledge_base(record) for record in records])


@router.get(
    "/{kb}/documents", summary="The documents of a knowledge base", response_model=Envelope[DocumentList]
)
def list_documents(
    kb: str,
    resources: ServerResources,
    tenant: CallerTenant,
    status: Annotated[
        Literal["indexed", "quarantined", "deleted"] | None,
        Query(description="Only documents in this status."),
    ] = None,
) -> Envelope[DocumentList]:
    """Each document with its status, chunks, parser and the reason it was quarantined or deleted."""
    checked("knowledge base", kb)
    owned_knowledge_base(resources.catalog.for_tenant(tenant), kb, tenant)
    documents = resources.catalog.for_tenant(tenant).documents(kb, status)
    return ok(
        DocumentList(
            knowledge_base=kb,
            items=[Document.model_validate(document, from_attributes=True) for document in documents],
        )
    )


@router.post("/{kb}/search", summary="Search a knowledge base", response_model=Envelope[SearchResult])
def search(
    kb: str, request: SearchRequest, resources: ServerResources, tenant: CallerTenant
) -> Envelope[SearchResult]:
    """The best chunks for a query, on the index and model the server keeps open (no per-request set-up).
    The index is reached only through a knowledge base the caller's tenant holds."""
    checked("knowledge base", kb)
    record = owned_knowledge_base(resources.catalog, kb, tenant)
    # the stage opens a catalog of the settings' tenant: the caller's, so its own documents are named
    as_tenant = resources.settings.model_copy(update={"tenant": tenant})
    conditions = search_conditions(
        as_tenant, kb, documents=request.documents, headings=request.headings, pages=request.pages
    )
    index = resources.index(record)
    with resources.model_lock:
        found = search_index(
            index,
            resources.embedder,
            record,
            request.query,
            k=request.top_k,
            mode=request.mode,
            conditions=conditions,
            search=resources.settings.search,
        )
    hits = [hit for hit in found.hits if request.min_score is None or hit.score >= request.min_score]
    return ok(
        SearchResult(
            knowledge_base=kb,
            mode=request.mode,
            best_similarity=found.best_similarity,
            hits=[
                view_of(SearchHit, hit, rank=rank, chunk_id=hit.id) for rank, hit in enumerate(hits, start=1)
            ],
        )
    )


class LineageCitation(BaseModel):
    """An answer's source citing a document of the knowledge base."""

    conversation_id: str
    conversation_title: str
    message_id: int
    marker: int = Field(description="The [n] the answer cites it by.")
    document_id: int
    document_uri: str
    document_version_id: int
    chunk_id: str | None = Field(description="Null once the chunk left the catalog (a newer version).")
    chunk_index: int | None
    page: int | None
    heading: str | None


class KnowledgeBaseLineage(BaseModel):
    knowledge_base: str
    documents: list[Document]
    citations: list[LineageCitation] = Field(description="Oldest answer first.")


@router.get(
    "/{kb}/lineage",
    summary="Documents, chunks and the conversations that cited them",
    response_model=Envelope[KnowledgeBaseLineage],
)
def get_lineage(kb: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[KnowledgeBaseLineage]:
    """The knowledge base's documents and every answer source citing one of them: document → chunk →
    conversation, from the catalog (what the console's lineage graph draws)."""
    listed = list_documents(kb, resources, tenant).data
    cited = resources.catalog.for_tenant(tenant).knowledge_base_citations(kb, tenant=tenant)
    return ok(
        KnowledgeBaseLineage(
            knowledge_base=kb,
            documents=listed.items,
            citations=[LineageCitation(**vars(item)) for item in cited],
        )
    )


class ChunkPassage(BaseModel):
    chunk_id: str
    doc_uri: str
    page: int | None
    heading: str | None
    text: str = Field(description="The chunk's text, as the index holds it.")


@router.get("/{kb}/chunks/{chunk_id}", summary="One chunk's passage", response_model=Envelope[ChunkPassage])
def get_chunk(
    kb: str,
    chunk_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="A chunk id (hex).")],
    resources: ServerResources,
    tenant: CallerTenant,
) -> Envelope[ChunkPassage]:
    """The passage of a chunk the index holds (what a stored citation points at); 404 for a chunk it does
    not hold (never indexed here, or replaced by a newer version of its document)."""
    checked("knowledge base", kb)
    record = owned_knowledge_base(resources.catalog.for_tenant(tenant), kb, tenant)
    found = resources.index(record).hits([(chunk_id, 0.0)])
    if not found:
        raise NotFoundError(
            f"knowledge base {kb!r} holds no chunk {chunk_id!r}: a newer version of its document may have "
            "replaced it; search the knowledge base for the passage"
        )
    hit = found[0]
    return ok(view_of(ChunkPassage, hit, chunk_id=hit.id))


# -- writes ----------------------------------------------------------------------------------------------

MAX_FILE_NAME_BYTES = 255
MAX_DESCRIPTION_CHARS = 2000
_FOREIGN_SOURCE = (
    "The knowledge base is ingested from a folder or prefix the server does not write to (40901)."
)
UPLOAD_FIELD = "body.file"


class CreateKnowledgeBase(BaseModel):
    name: str = Field(
        description="1-63 lower-case letters, digits, '_' or '-', starting with a letter (the naming rule)."
    )
    description: str | None = Field(
        default=None,
        max_length=MAX_DESCRIPTION_CHARS,
        description="What the knowledge base holds, for people.",
    )

    @field_validator("name")
    @classmethod
    def _named_by_the_rule(cls, value: str) -> str:
        return check_name("knowledge base", value)


class UploadedDocument(BaseModel):
    knowledge_base: str
    file_name: str
    uri: str = Field(description="The document's URI: where it is stored, and its id in search hits.")
    sha256: str
    size: int
    run: Run = Field(description="The ingest run that indexes it: poll GET /api/v1/runs/{run.id}.")


class DeletedDocument(BaseModel):
    knowledge_base: str
    document_id: int
    uri: str
    run: Run = Field(description="The ingest run that removes its chunks: poll GET /api/v1/runs/{run.id}.")


def store_source_of(store: ObjectStore, resources: ServerResources, kb: str, tenant: str) -> str:
    """The source of ``tenant``'s knowledge base whose documents live in the object store: its documents
    prefix (``docs/<kb>/``, other tenants' under ``tenants/<tenant>/``) as `ods kb ingest` and the flows
    read it (a folder for the local store)."""
    layout = watch_layout(resources.settings)
    return uri_resolver(store)(knowledge_base_documents_prefix(kb, tenant, layout))


def _stored_in(store: ObjectStore, resources: ServerResources, record: KnowledgeBaseRecord) -> str:
    """The store prefix ``record``'s documents are in; ConflictError when it is ingested from elsewhere
    (a folder or prefix of its own, which the server does not write to)."""
    source = store_source_of(store, resources, record.name, record.tenant)
    if (record.source_uri or "").rstrip("/") != source.rstrip("/"):
        raise ConflictError(
            f"knowledge base {record.name!r} is ingested from {record.source_uri or 'no source'}, not from the "
            f"object store's {source}: add or remove its documents there and run ods kb ingest, or create a "
            "knowledge base with POST /api/v1/knowledge-bases to upload to"
        )
    return source


@router.post(
    "",
    summary="Create a knowledge base",
    status_code=201,
    response_model=Envelope[KnowledgeBase],
    responses={
        409: {"model": ErrorEnvelope, "description": "A knowledge base of that name exists (code 40901)."}
    },
)
def create_knowledge_base(
    request: CreateKnowledgeBase, resources: ServerResources, tenant: CallerTenant, owner: CallerSubject
) -> Envelope[KnowledgeBase]:
    """An empty knowledge base whose documents are uploaded to the object store (``docs/<name>/``), with
    the configured embedding model. A name already taken is 409 (code 40901): creating is not a way to
    change a knowledge base."""
    catalog = resources.catalog.for_tenant(tenant)
    try:
        existing = catalog.get_knowledge_base(request.name)
    except NotFoundError:
        existing = None
    if existing is not None and existing.tenant != tenant:
        raise name_taken("knowledge base", request.name)
    if existing is not None:
        raise ConflictError(
            f"knowledge base {request.name!r} exists (source {existing.source_uri}); upload to it with "
            f"POST /api/v1/knowledge-bases/{request.name}/documents, or pick another name"
        )
    source = store_source_of(build_object_store(resources.settings), resources, request.name, tenant)
    with resources.model_lock:  # a new knowledge base reads the embedder's dimension (loads the model)
        record = open_knowledge_base(
            catalog,
            resources.settings,
            request.name,
            source,
            description=request.description,
            tenant=tenant,
            owner=owner,
        )
    if record.tenant != tenant:  # another tenant created the name since the check above
        raise name_taken("knowledge base", request.name)
    return ok(_knowledge_base(record))


def upload_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an uploaded document, or None: it must be a plain file name (no folder,
    no '..', not hidden) of printable characters, at most ``MAX_FILE_NAME_BYTES`` bytes of UTF-8."""
    shown = printable_name(name)[:120]
    if not name.strip():
        return "the file has no name; send it with a file name such as notes.md"
    if "/" in name or "\\" in name or name in (".", ".."):
        return f'file name "{shown}" holds a folder (/, \\ or ..); send a plain file name such as notes.md'
    if name.startswith("."):
        return f'file name "{shown}" starts with "." (hidden files are never ingested); rename the file'
    problem = document_name_problem(name, max_bytes=MAX_FILE_NAME_BYTES)
    return None if problem is None else f"file {problem}; rename the file"


@router.post(
    "/{kb}/documents",
    summary="Upload a document and index it",
    status_code=202,
    response_model=Envelope[UploadedDocument],
    responses={
        409: {"model": ErrorEnvelope, "description": _FOREIGN_SOURCE},
        413: {"model": ErrorEnvelope, "description": "Body over ODS_API__MAX_UPLOAD_BYTES (code 40001)."},
    },
)
def upload_document(
    kb: str,
    resources: ServerResources,
    runs: ServerRuns,
    tenant: CallerTenant,
    quotas: ServerQuotas,
    file: Annotated[UploadFile, File(description="The document (PDF, HTML, MD, TXT, DOCX, PPTX, EML).")],
) -> Any:
    """Store the file under the knowledge base's prefix (the same name again replaces it: one document),
    then start an ingest of the knowledge base in the background; answers 202 with the run to poll."""
    checked("knowledge base", kb)
    path = f"/api/v1/knowledge-bases/{kb}/documents"
    record = owned_knowledge_base(resources.catalog.for_tenant(tenant), kb, tenant)
    store = build_object_store(resources.settings)
    _stored_in(store, resources, record)
    name = file.filename or ""
    problem = upload_name_problem(name)
    if problem is not None:
        return bad_input_response(path, UPLOAD_FIELD, problem)
    limit = resources.settings.api.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        return bad_input_response(
            path,
            UPLOAD_FIELD,
            f"file {name!r} is larger than the upload limit of {limit:,} bytes (ODS_API__MAX_UPLOAD_BYTES)",
        )
    if not data:
        return bad_input_response(
            path, UPLOAD_FIELD, f"file {name!r} is empty; upload a document with text in it"
        )
    layout = watch_layout(resources.settings)
    key = knowledge_base_documents_prefix(kb, tenant, layout) + name  # the source checked above
    quotas.check_upload(tenant, store, key, len(data))  # 40901 past the tenant's storage or documents
    info = store.put_bytes(key, data, content_type=file.content_type)
    run = runs.request_sync(kb, f"upload {name}", tenant)
    return ok(
        UploadedDocument(
            knowledge_base=kb,
            file_name=name,
            uri=store.uri(key),
            sha256=info.sha256 or sha256_bytes(data),
            size=len(data),
            run=run_view(run),
        )
    )


@router.delete(
    "/{kb}/documents/{document_id}",
    summary="Delete a document and its chunks",
    status_code=202,
    response_model=Envelope[DeletedDocument],
    responses={409: {"model": ErrorEnvelope, "description": _FOREIGN_SOURCE}},
)
def delete_document(
    kb: str, document_id: int, resources: ServerResources, runs: ServerRuns, tenant: CallerTenant
) -> Envelope[DeletedDocument]:
    """Remove the document's object from the store, then sync the knowledge base in the background so its
    chunks leave the index; answers 202 with the run to poll. 404 for a document the knowledge base does
    not have, or has deleted already."""
    checked("knowledge base", kb)
    catalog = resources.catalog.for_tenant(tenant)
    record = owned_knowledge_base(catalog, kb, tenant)
    document = next((item for item in catalog.documents(kb) if item.id == document_id), None)
    if document is None or document.status == "deleted":
        state = "has no" if document is None else "already deleted"
        raise NotFoundError(
            f"knowledge base {kb!r} {state} document {document_id}; list its documents with "
            f"GET /api/v1/knowledge-bases/{kb}/documents"
        )
    store = build_object_store(resources.settings)
    _stored_in(store, resources, record)
    if document.uri.startswith(store.location):
        store.delete(key_of(store, document.uri))
    else:
        raise OdsError(f"document {document_id} ({document.uri}) is not in the object store {store.location}")
    run = runs.request_sync(kb, f"delete document {document_id}", tenant)
    return ok(
        DeletedDocument(knowledge_base=kb, document_id=document_id, uri=document.uri, run=run_view(run))
    )


@router.post(
    "/{kb}/sync",
    summary="Sync a knowledge base with its source",
    status_code=202,
    response_model=Envelope[Run],
)
def sync_knowledge_base(
    kb: str, resources: ServerResources, runs: ServerRuns, tenant: CallerTenant
) -> Envelope[Run]:
    """Start an ingest of the knowledge base from its source (the re-sync button): new and changed
    documents are indexed, removed ones leave the index, unchanged ones are skipped. Asked for again while
    it waits to start, the answer is the same run; answers 202 with the run to poll."""
    checked("knowledge base", kb)
    owned_knowledge_base(resources.catalog.for_tenant(tenant), kb, tenant)
    return ok(run_view(runs.request_sync(kb, "sync", tenant)))


@router.get("/{kb:path}", include_in_schema=False)  # a name holding '/' reaches the name check
@router.get("/{kb}", summary="A knowledge base and its counts", response_model=Envelope[KnowledgeBaseStatus])
def get_knowledge_base(
    kb: str, resources: ServerResources, tenant: CallerTenant
) -> Envelope[KnowledgeBaseStatus]:
    """Source, embedding model, collection, documents, versions and chunks per status, the BM25 analyzer
    and the hybrid fusion."""
    checked("knowledge base", kb)
    record = owned_knowledge_base(resources.catalog.for_tenant(tenant), kb, tenant)
    counts = resources.catalog.for_tenant(tenant).knowledge_base_counts(kb)
    return ok(
        view_of(
            KnowledgeBaseStatus,
            record,
            documents=counts.documents,
            versions=counts.versions,
            indexed_chunks=counts.indexed_chunks,
            analyzer=resources.index(record).analyzer,
            fusion=describe_fusion(resources.settings.search),
        )
    )
