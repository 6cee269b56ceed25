"""``/api/v1/conversations``: the conversations answers were kept in, with citations and SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from ods.api.deps import ServerResources
from ods.api.envelope import Envelope, ok
from ods.api.tenancy import CallerTenant, owned_conversation
from ods.api.views import view_of
from ods.stages.answer.conversation import MAX_TITLE_CHARS, rename_conversation

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])

CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ConversationId = Annotated[
    str, Path(pattern=CONVERSATION_ID_PATTERN, description="The conversation id an answer returned.")
]


class ConversationSummary(BaseModel):
    id: str
    title: str = Field(description="The first question, shortened.")
    created_at: datetime
    updated_at: datetime = Field(description="When its last message was added.")


class MessageCitation(BaseModel):
    """Source ``[marker]`` of an answer: a document chunk (with where it is) or a dataset version."""

    marker: int
    chunk_id: str | None
    document_version_id: int | None
    dataset_version_id: int | None
    doc_uri: str | None = Field(description="The cited document (null once its chunk left the catalog).")
    knowledge_base: str | None = Field(
        description="The knowledge base holding the chunk (its passage: GET /api/v1/knowledge-bases/"
        "{knowledge_base}/chunks/{chunk_id}); null once the chunk left the catalog."
    )
    page: int | None
    heading: str | None


class ConversationMessage(BaseModel):
    id: int
    role: Literal["user", "assistant", "system"]
    content: str
    sql: str | None = Field(description="The SQL an answer ran, when it queried datasets.")
    model: str | None = Field(description="The model that wrote an answer (null: quoted evidence).")
    usage: dict[str, Any] | None
    created_at: datetime
    citations: list[MessageCitation]


class Conversation(ConversationSummary):
    messages: list[ConversationMessage] = Field(description="Oldest first.")


class RenameConversation(BaseModel):
    title: str = Field(
        min_length=1,
        max_length=MAX_TITLE_CHARS,
        description="The new title (whitespace runs become one space).",
    )


class DeletedConversation(BaseModel):
    id: str
    deleted: Literal[True] = True


@router.get("", summary="List conversations", response_model=Envelope[list[ConversationSummary]])
def list_conversations(
    resources: ServerResources, tenant: CallerTenant
) -> Envelope[list[ConversationSummary]]:
    """Every conversation of the caller's tenant, most recently active first (`ods conversations list`)."""
    return ok(
        [
            ConversationSummary.model_validate(item, from_attributes=True)
            for item in resources.catalog.for_tenant(tenant).list_conversations(tenant=tenant)
        ]
    )


@router.get("/{conversation_id}", summary="A conversation's messages", response_model=Envelope[Conversation])
def get_conversation(
    conversation_id: ConversationId, resources: ServerResources, tenant: CallerTenant
) -> Envelope[Conversation]:
    """Every message with the SQL it ran and the sources it cited, resolved to documents and pages
    (`ods conversations show`)."""
    catalog = resources.catalog.for_tenant(tenant)
    record = owned_conversation(catalog, conversation_id, tenant)
    chunk_ids = [
        citation.chunk_id
        for message in record.messages
        for citation in message.citations
        if citation.chunk_id
    ]
    sources = catalog.chunk_sources(chunk_ids)
    knowledge_bases = catalog.chunk_knowledge_bases(chunk_ids)
    messages = []
    for message in record.messages:
        citations = []
        for citation in message.citations:
            chunk = sources.get(citation.chunk_id or "")
            citations.append(
                view_of(
                    MessageCitation,
                    citation,
                    doc_uri=chunk.doc_uri if chunk else None,
                    knowledge_base=knowledge_bases.get(citation.chunk_id or ""),
                    page=chunk.page if chunk else None,
                    heading=chunk.heading if chunk else None,
                )
            )
        messages.append(view_of(ConversationMessage, message, citations=citations))
    return ok(view_of(Conversation, record, messages=messages))


@router.patch(
    "/{conversation_id}", summary="Rename a conversation", response_model=Envelope[ConversationSummary]
)
def patch_conversation(
    conversation_id: ConversationId,
    body: RenameConversation,
    resources: ServerResources,
    tenant: CallerTenant,
) -> Envelope[ConversationSummary]:
    """Give the conversation a new title; the same title again changes nothing. 404 if unknown."""
    owned_conversation(resources.catalog.for_tenant(tenant), conversation_id, tenant)
    item = rename_conversation(resources.catalog.for_tenant(tenant), conversation_id, body.title)
    return ok(ConversationSummary.model_validate(item, from_attributes=True))


@router.delete(
    "/{conversation_id}", summary="Delete a conversation", response_model=Envelope[DeletedConversation]
)
def delete_conversation(
    conversation_id: ConversationId, resources: ServerResources, tenant: CallerTenant
) -> Envelope[DeletedConversation]:
    """The conversation, its messages and their citations (`ods conversations delete`); 404 if unknown."""
    owned_conversation(resources.catalog.for_tenant(tenant), conversation_id, tenant)
    resources.catalog.for_tenant(tenant).delete_conversation(conversation_id)
    return ok(DeletedConversation(id=conversation_id))
