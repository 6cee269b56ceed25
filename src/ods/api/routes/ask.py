"""``/api/v1/ask``: a question answered from a knowledge base and/or datasets, with citations, SQL and the
result table, kept in a conversation: the answer stage `ods ask` calls, as JSON or as a server-sent stream.

The stream (``stream: true``) sends ``event: delta`` (``{"text"}``, the answer as it is written), then one
``event: sources`` (citations, the SQL and its result table, notes), then ``event: done`` (conversation,
route, model, usage, timings). A failure after the stream started is ``event: error``
(``{"code", "message"}``) in place of the rest. The answer runs in a thread of its own and finishes (its
turn kept) even when the client goes away mid-stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from ods.api.audit import note_question, note_sql
from ods.api.deps import ServerResources, checked
from ods.api.envelope import Envelope, error_kind, ok
from ods.api.resources import TenantAdapters
from ods.api.routes.conversations import CONVERSATION_ID_PATTERN
from ods.api.streaming import event_stream, run_streaming
from ods.api.tenancy import CallerTenant, owned_conversation, owned_knowledge_base, tenant_dataset_refs
from ods.domain.answering import Mode
from ods.domain.identity import DEFAULT_TENANT
from ods.domain.names import check_name
from ods.errors import OdsError
from ods.stages.answer import Answer, answer_question
from ods.stages.answer.conversation import conversation_title

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["answers"])

MAX_QUESTION_CHARS = 4000
MAX_DATASETS = 50


class AskRequest(BaseModel):
    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, description="The question, in plain words."
    )
    kb: str | None = Field(default=None, description="Knowledge base to answer from (documents).")
    datasets: list[str] | None = Field(
        default=None,
        max_length=MAX_DATASETS,
        description="Registered datasets to query with SQL (NAME or NAME@VERSION); [] for every one; "
        "null: none.",
    )
    conversation_id: str | None = Field(
        default=None,
        pattern=CONVERSATION_ID_PATTERN,
        description="Continue this conversation (its earlier turns are in view); each answer returns its id.",
    )
    mode: Literal["auto", "rag", "sql", "both"] = Field(
        default="auto", description="auto (route by the question), rag, sql or both."
    )
    documents: list[str] | None = Field(
        default=None, max_length=50, description="Search only these documents of kb (URIs or file names)."
    )
    stream: bool = Field(default=False, description="Answer as server-sent events (delta, sources, done).")

    @field_validator("kb")
    @classmethod
    def _kb_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name("knowledge base", value)

    @field_validator("datasets")
    @classmethod
    def _dataset_refs(cls, value: list[str] | None) -> list[str] | None:
        for ref in value or ():
            check_name("dataset", ref.partition("@")[0])
        return value


class Citation(BaseModel):
    """What source ``[marker]`` of an answer is: a document passage or a dataset query."""

    marker: int
    kind: Literal["document", "dataset"]
    label: str
    doc_uri: str | None = None
    page: int | None = None
    heading: str | None = None
    chunk_id: str | None = None
    dataset: str | None = None
    score: float | None = None


class AnswerCitation(Citation):
    """A source of the answer with the text it cites."""

    excerpt: str = Field(description="The cited text (a passage, or the query's result in short).")


class ResultTable(BaseModel):
    """The result table of the SQL an answer ran (up to 50 rows)."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="Whether the result was cut at the row cap.")
    error: str | None = Field(description="Why no SQL ran or it failed (then the answer rests on documents).")


class SqlResult(ResultTable):
    """The SQL the answer ran over the datasets, and its result table."""

    datasets: list[str]
    sql: str | None


class AskSources(BaseModel):
    """What the answer rests on: the stream's ``sources`` event, and part of the JSON answer."""

    citations: list[AnswerCitation]
    sql: SqlResult | None
    notes: list[str] = Field(description="What the reader should know (e.g. the answer quotes its evidence).")


class AskDone(BaseModel):
    """How the answer was made: the stream's ``done`` event, and part of the JSON answer."""

    conversation_id: str | None = Field(description="The conversation the turn was kept in.")
    route: Literal["rag", "sql", "both"]
    model: str | None = Field(description="The model that wrote it; null when it quotes its evidence.")
    usage: dict[str, int]
    timings: dict[str, float] = Field(description="Seconds per step (sql, retrieval, generation, total).")


class AskAnswer(AskSources, AskDone):
    question: str
    answer: str = Field(description="The answer, citing its sources as [n].")


def _sources(answer: Answer) -> AskSources:
    sql = answer.sql
    return AskSources(
        citations=[
            AnswerCitation.model_validate(source, from_attributes=True) for source in answer.citations
        ],
        sql=None
        if sql is None
        else SqlResult(
            datasets=list(sql.datasets),
            sql=sql.sql,
            columns=list(sql.columns),
            rows=[list(row) for row in sql.rows[:50]],
            truncated=sql.truncated,
            error=sql.error,
        ),
        notes=list(answer.notes),
    )


def _done(answer: Answer) -> AskDone:
    return AskDone(
        conversation_id=answer.conversation_id,
        route=answer.route,
        model=answer.model,
        usage=answer.usage.as_dict(),
        timings=answer.timings,
    )


@router.post(
    "/ask",
    summary="Answer a question with citations from documents and datasets",
    response_model=Envelope[AskAnswer],
    responses={200: {"content": {"text/event-stream": {}}, "description": "With stream: true, SSE events."}},
)
def ask(request: AskRequest, resources: ServerResources, http: Request, tenant: CallerTenant) -> Any:
    """The answer stage `ods ask` runs: route, SQL over the datasets, retrieval from the knowledge base,
    an answer citing both as [n], the turn kept in a conversation."""
    note_question(http, request.question)
    catalog = resources.catalog.for_tenant(tenant)
    if request.kb is not None:
        checked("knowledge base", request.kb)
        owned_knowledge_base(catalog, request.kb, tenant)  # unknown or another tenant's: 404 before a stream
    datasets = None if request.datasets is None else tenant_dataset_refs(catalog, request.datasets, tenant)
    conversation_id = tenant_conversation(resources, request.conversation_id, request.question, tenant)
    if not request.question.strip():
        raise OdsError("the question is empty; ask something, e.g. 'what is our returns policy?'")

    def run(on_text: Callable[[str], None] | None) -> Answer:
        return answer_in_server(
            resources,
            http,
            request.question,
            kb=request.kb,
            datasets=datasets,
            conversation_id=conversation_id,
            mode=request.mode,
            documents=request.documents,
            on_text=on_text,
            tenant=tenant,
        )

    if request.stream:
        return event_stream(_events(run))
    answer = run(None)
    return ok(
        AskAnswer(
            question=answer.question,
            answer=answer.text,
            **_sources(answer).model_dump(),
            **_done(answer).model_dump(),
        )
    )


def tenant_conversation(
    resources: ServerResources, conversation_id: str | None, question: str, tenant: str
) -> str | None:
    """The conversation a turn is kept in: ``conversation_id`` when ``tenant`` holds it (404 otherwise),
    else a new one of ``tenant``, so it is the caller's from its first turn (none for an empty question,
    which the caller refuses)."""
    if conversation_id is not None:
        return owned_conversation(resources.catalog.for_tenant(tenant), conversation_id, tenant).id
    if not question.strip():
        return None
    return (
        resources.catalog.for_tenant(tenant)
        .create_conversation(conversation_title(question), tenant=tenant)
        .id
    )


def answer_in_server(
    resources: ServerResources,
    http: Request,
    question: str,
    *,
    kb: str | None,
    datasets: list[str] | None,
    conversation_id: str | None,
    mode: Mode,
    documents: list[str] | None = None,
    on_text: Callable[[str], None] | None,
    tenant: str = DEFAULT_TENANT,
) -> Answer:
    """The answer stage as the server runs it: on its shared models, one caller at a time, and the SQL it
    ran noted for the request's audit row."""
    with resources.model_lock:
        answer = answer_question(
            resources.settings,
            question,
            kb=kb,
            datasets=datasets,
            conversation_id=conversation_id,
            mode=mode,
            documents=documents,
            llm=resources.llm,
            on_text=on_text,
            adapters=TenantAdapters(resources, tenant),
        )
    note_sql(http, answer.sql.sql if answer.sql is not None else None)
    return answer


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def _events(run: Callable[[Callable[[str], None] | None], Answer]) -> Iterator[str]:
    for item in run_streaming(run, thread_name="ods-api-ask-stream"):
        if isinstance(item, str):
            if item:
                yield _event("delta", {"text": item})
        elif isinstance(item, Answer):
            yield _event("sources", _sources(item).model_dump(mode="json"))
            yield _event("done", _done(item).model_dump(mode="json"))
        elif isinstance(item, OdsError):
            yield _event("error", {"code": error_kind(item).code, "message": " ".join(str(item).split())})
        else:
            logger.error("a streamed answer failed", exc_info=item)
            yield _event(
                "error", {"code": 50001, "message": "the answer failed; the server log holds the details"}
            )
