"""``/api/v1/knowledge-bases``: knowledge bases, their documents, and search (dense, BM25 or hybrid)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.api.deps import ServerResources, checked
from ods.api.envelope import Envelope, ok
from ods.stages.retrieve import search_index

router = APIRouter(prefix="/api/v1/knowledge-bases", tags=["knowledge bases"])

MAX_TOP_K = 100


class KnowledgeBase(BaseModel):
    name: str
    source_uri: str | None = Field(description="The folder or s3:// prefix it was ingested from.")
    embedding_model: str
    embedding_dim: int
    collection_name: str
    created_at: datetime


class KnowledgeBaseStatus(KnowledgeBase):
    documents: dict[str, int] = Field(description="Documents per status (indexed, quarantined, deleted).")
    versions: dict[str, int] = Field(description="Document versions per status.")
    indexed_chunks: int = Field(description="Chunks of indexed versions, which the index holds too.")


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
    return KnowledgeBase(
        name=record.name,
        source_uri=record.source_uri,
        embedding_model=record.embedding_model,
        embedding_dim=record.embedding_dim,
        collection_name=record.collection_name,
        created_at=record.created_at,
    )


@router.get("", summary="List knowledge bases", response_model=Envelope[list[KnowledgeBase]])
def list_knowledge_bases(resources: ServerResources) -> Envelope[list[KnowledgeBase]]:
    """Every knowledge base, by name."""
    return ok([_knowledge_base(record) for record in resources.catalog.list_knowledge_bases()])


@router.get(
    "/{kb}/documents", summary="The documents of a knowledge base", response_model=Envelope[DocumentList]
)
def list_documents(
    kb: str,
    resources: ServerResources,
    status: Annotated[
        Literal["indexed", "quarantined", "deleted"] | None,
        Query(description="Only documents in this status."),
    ] = None,
) -> Envelope[DocumentList]:
    """Each document with its status, chunks, parser and the reason it was quarantined or deleted."""
    checked("knowledge base", kb)
    documents = resources.catalog.documents(kb, status)
    return ok(
        DocumentList(
            knowledge_base=kb,
            items=[
                Document(
                    id=document.id,
                    uri=document.uri,
                    status=document.status,
                    reason=document.reason,
                    chunk_count=document.chunk_count,
                    parser=document.parser,
                    sha256=document.sha256,
                    updated_at=document.updated_at,
                )
                for document in documents
            ],
        )
    )


@router.post("/{kb}/search", summary="Search a knowledge base", response_model=Envelope[SearchResult])
def search(kb: str, request: SearchRequest, resources: ServerResources) -> Envelope[SearchResult]:
    """The best chunks for a query, on the index and model the server keeps open (no per-request set-up)."""
    checked("knowledge base", kb)
    record = resources.catalog.get_knowledge_base(kb)
    index = resources.index(record)
    with resources.model_lock:
        found = search_index(
            index, resources.embedder, record, request.query, k=request.top_k, mode=request.mode
        )
    hits = [hit for hit in found.hits if request.min_score is None or hit.score >= request.min_score]
    return ok(
        SearchResult(
            knowledge_base=kb,
            mode=request.mode,
            best_similarity=found.best_similarity,
            hits=[
                SearchHit(
                    rank=rank,
                    score=hit.score,
                    chunk_id=hit.id,
                    doc_uri=hit.doc_uri,
                    page=hit.page,
                    heading=hit.heading,
                    text=hit.text,
                )
                for rank, hit in enumerate(hits, start=1)
            ],
        )
    )


@router.get("/{kb:path}", include_in_schema=False)  # a name holding '/' reaches the name check
@router.get("/{kb}", summary="A knowledge base and its counts", response_model=Envelope[KnowledgeBaseStatus])
def get_knowledge_base(kb: str, resources: ServerResources) -> Envelope[KnowledgeBaseStatus]:
    """Source, embedding model, collection, and documents, versions and chunks per status."""
    checked("knowledge base", kb)
    record = resources.catalog.get_knowledge_base(kb)
    counts = resources.catalog.knowledge_base_counts(kb)
    return ok(
        KnowledgeBaseStatus(
            **_knowledge_base(record).model_dump(),
            documents=counts.documents,
            versions=counts.versions,
            indexed_chunks=counts.indexed_chunks,
        )
    )
