"""The conversation an answer belongs to: its recent turns read for the prompts, the new turn written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ods.adapters.catalog import (
    CitationRecord,
    ConversationCatalog,
    ConversationRecord,
    KnowledgeCatalog,
)
from ods.domain.answering import recent_history
from ods.domain.chat import ChatMessage
from ods.errors import NotFoundError, OdsError
from ods.stages.answer.results import Gathered


class CitingCatalog(ConversationCatalog, KnowledgeCatalog, Protocol):
    """The conversations a turn is written to, and the chunks its citations resolve to."""


def recent_turns(
    catalog: ConversationCatalog, conversation_id: str | None, turns: int
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The recent turns for the answer prompt, and for the SQL prompt (questions with the SQL they ran)."""
    if conversation_id is None or turns == 0:
        return [], []
    try:
        conversation = catalog.get_conversation(conversation_id)
    except NotFoundError:
        raise NotFoundError(
            f"no conversation {conversation_id!r}; list them with `ods conversations list`"
        ) from None
    answers: list[ChatMessage] = []
    queries: list[ChatMessage] = []
    asked: str | None = None
    for message in conversation.messages:
        if message.role == "user":
            answers.append(ChatMessage("user", message.content))
            asked = message.content
        elif message.role == "assistant":
            answers.append(ChatMessage("assistant", message.content))
            if message.sql and asked is not None:
                queries += [
                    ChatMessage("user", asked),
                    ChatMessage("assistant", f"```sql\n{message.sql}\n```"),
                ]
    return recent_history(answers, max_turns=turns), recent_history(queries, max_turns=turns)


def remember_turn(
    catalog: CitingCatalog,
    conversation_id: str | None,
    question: str,
    text: str,
    gathered: Gathered,
    model_id: str | None,
    cited: Sequence[int],
) -> tuple[str, int]:
    if conversation_id is None:
        conversation_id = catalog.create_conversation(conversation_title(question)).id
    chunk_sources = catalog.chunk_sources(source.chunk_id for source in gathered.sources if source.chunk_id)
    citations = []
    for source in gathered.sources:
        if source.marker not in cited:
            continue
        chunk = chunk_sources.get(source.chunk_id or "")
        citations.append(
            CitationRecord(
                marker=source.marker,
                chunk_id=chunk.chunk_id if chunk else None,
                document_version_id=chunk.document_version_id if chunk else None,
                dataset_version_id=source.dataset_version_id,
            )
        )
    catalog.add_message(conversation_id, "user", question)
    message = catalog.add_message(
        conversation_id,
        "assistant",
        text,
        sql=gathered.sql_run.sql if gathered.sql_run else None,
        model=model_id,
        usage=gathered.usage.as_dict(),
        citations=citations,
    )
    return conversation_id, message.id


def conversation_title(question: str) -> str:
    """A conversation's title: its first question on one line, cut to 80 characters."""
    words = " ".join(question.split())
    return words if len(words) <= 80 else words[:79] + "…"


MAX_TITLE_CHARS = 200


def rename_conversation(catalog: ConversationCatalog, conversation_id: str, title: str) -> ConversationRecord:
    """Give the conversation ``title`` (on one line); renaming to the title it has changes nothing."""
    words = " ".join(title.split())
    if not words or not words.isprintable():
        raise OdsError(
            f"title {title[:80]!r} is empty or holds control characters; give a title of printable text"
        )
    if len(words) > MAX_TITLE_CHARS:
        raise OdsError(f"title is {len(words)} characters long; give at most {MAX_TITLE_CHARS}")
    return catalog.rename_conversation(conversation_id, words)
