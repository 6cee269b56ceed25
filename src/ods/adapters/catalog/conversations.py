"""Conversations, their messages and the sources each answer cites (chunks, document or dataset versions)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from ods.adapters.catalog.base import (
    CatalogBase,
    add_row,
    check_choice,
    require_row,
    require_rows,
    to_record,
    values_of,
)
from ods.adapters.catalog.records import (
    CitationRecord,
    ConversationRecord,
    KnowledgeBaseCitation,
    MessageRecord,
)
from ods.adapters.catalog.schema import (
    Chunk,
    Citation,
    Conversation,
    DatasetVersion,
    Document,
    DocumentVersion,
    KnowledgeBase,
    Message,
    MessageRole,
    utcnow,
)
from ods.errors import NotFoundError


class ConversationTables(CatalogBase):
    """``conversations``, ``messages`` and ``citations``."""

    def create_conversation(self, title: str, *, tenant: str | None = None) -> ConversationRecord:
        """Start a conversation of ``tenant`` (else the catalog's tenant); its id is a fresh uuid4 hex."""

        def work(session: Session) -> ConversationRecord:
            row = Conversation(id=uuid.uuid4().hex, title=title, tenant=tenant or self.tenant)
            return _conversation_record(add_row(session, row))

        return self._write(work)

    def add_message(
        self,
        conversation_id: str,
        role: MessageRole,
        content: str,
        *,
        sql: str | None = None,
        model: str | None = None,
        usage: dict[str, Any] | None = None,
        citations: Sequence[CitationRecord] = (),
    ) -> MessageRecord:
        """Append a message (with the sources it cites) to a conversation."""
        check_choice("message role", role, MessageRole)

        def work(session: Session) -> MessageRecord:
            conversation = require_row(session, Conversation, conversation_id, "conversation")
            _require_citation_targets(session, citations)
            message = Message(
                conversation_id=conversation_id,
                role=role,
                content=content,
                sql=sql,
                model=model,
                usage=usage,
                citations=[Citation(**values_of(citation)) for citation in citations],
            )
            conversation.updated_at = utcnow()
            return _message_record(add_row(session, message))

        return self._write(work)

    def get_conversation(self, conversation_id: str) -> ConversationRecord:
        """A conversation with its messages (oldest first) and their citations."""

        def work(session: Session) -> ConversationRecord:
            with_messages = selectinload(Conversation.messages).selectinload(Message.citations)
            row = require_row(session, Conversation, conversation_id, "conversation", with_messages)
            return _conversation_record(row, with_messages=True)

        return self._read(work)

    def list_conversations(self, *, tenant: str | None = None) -> list[ConversationRecord]:
        """Every conversation (of ``tenant`` when given), most recently active first, without messages."""

        def work(session: Session) -> list[ConversationRecord]:
            query = select(Conversation).order_by(Conversation.updated_at.desc(), Conversation.id)
            if tenant is not None:
                query = query.where(Conversation.tenant == tenant)
            rows = session.scalars(query)
            return [_conversation_record(row) for row in rows]

        return self._read(work)

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete a conversation; the database cascades to its messages and citations."""

        def work(session: Session) -> None:
            require_row(session, Conversation, conversation_id, "conversation")
            session.execute(delete(Conversation).where(Conversation.id == conversation_id))

        self._write(work)

    def rename_conversation(self, conversation_id: str, title: str) -> ConversationRecord:
        """Give a conversation a new title; the same title again writes nothing."""

        def work(session: Session) -> ConversationRecord:
            row = require_row(session, Conversation, conversation_id, "conversation")
            row.title = title
            session.flush()
            return _conversation_record(row)

        return self._write(work)

    def knowledge_base_citations(self, kb: str, *, tenant: str | None = None) -> list[KnowledgeBaseCitation]:
        """Every answer's source that cites a document of knowledge base ``kb`` (in conversations of
        ``tenant`` when given), with its chunk while the catalog still holds it; oldest first."""

        def work(session: Session) -> list[KnowledgeBaseCitation]:
            query = (
                select(Citation, Message.id, Conversation, DocumentVersion.id, Document, Chunk)
                .join(Message, Citation.message_id == Message.id)
                .join(Conversation, Message.conversation_id == Conversation.id)
                .join(DocumentVersion, Citation.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .join(KnowledgeBase, Document.kb_id == KnowledgeBase.id)
                .outerjoin(Chunk, Citation.chunk_id == Chunk.id)
                .where(KnowledgeBase.name == kb)
                .order_by(Message.id, Citation.marker)
            )
            if tenant is not None:
                query = query.where(Conversation.tenant == tenant)
            return [
                KnowledgeBaseCitation(
                    conversation_id=conversation.id,
                    conversation_title=conversation.title,
                    message_id=message_id,
                    marker=citation.marker,
                    document_id=document.id,
                    document_uri=document.uri,
                    document_version_id=version_id,
                    chunk_id=chunk.id if chunk else None,
                    chunk_index=chunk.chunk_index if chunk else None,
                    page=chunk.page if chunk else None,
                    heading=chunk.heading if chunk else None,
                )
                for citation, message_id, conversation, version_id, document, chunk in session.execute(query)
            ]

        return self._read(work)

    def chunk_knowledge_bases(self, chunk_ids: Iterable[str]) -> dict[str, str]:
        """The knowledge base each known chunk belongs to, by chunk id (unknown ids are absent): where a
        stored citation's passage can be read again."""
        wanted = sorted(set(chunk_ids))

        def work(session: Session) -> dict[str, str]:
            if not wanted:
                return {}
            rows = session.execute(
                select(Chunk.id, KnowledgeBase.name)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .join(KnowledgeBase, Document.kb_id == KnowledgeBase.id)
                .where(Chunk.id.in_(wanted))
            ).all()
            return {chunk_id: name for chunk_id, name in rows}

        return self._read(work)


def _require_citation_targets(session: Session, citations: Sequence[CitationRecord]) -> None:
    chunk_ids = sorted({c.chunk_id for c in citations if c.chunk_id is not None})
    if chunk_ids:
        found = set(session.scalars(select(Chunk.id).where(Chunk.id.in_(chunk_ids))))
        missing = [chunk_id for chunk_id in chunk_ids if chunk_id not in found]
        if missing:
            raise NotFoundError(f"citation names unknown chunk {', '.join(missing)}")
    document_version_ids = sorted({c.document_version_id for c in citations if c.document_version_id})
    require_rows(session, DocumentVersion, DocumentVersion.id, document_version_ids, "document version")
    dataset_version_ids = sorted({c.dataset_version_id for c in citations if c.dataset_version_id})
    require_rows(session, DatasetVersion, DatasetVersion.id, dataset_version_ids, "dataset version")


def _message_record(row: Message) -> MessageRecord:
    citations = tuple(to_record(CitationRecord, citation) for citation in row.citations)
    return to_record(MessageRecord, row, citations=citations)


def _conversation_record(row: Conversation, *, with_messages: bool = False) -> ConversationRecord:
    messages = tuple(_message_record(message) for message in row.messages) if with_messages else ()
    return to_record(ConversationRecord, row, messages=messages)
