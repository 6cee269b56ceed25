"""``/v1/*``: an OpenAI-compatible gateway, in OpenAI's own shapes, so the official clients work unchanged.

- ``GET /v1/models``: each knowledge base as ``kb:<name>``, each dataset as ``sql:<dataset>``, the
  configured LLM and embedding model, and every deployed model with an active endpoint.
- ``POST /v1/chat/completions``: ``kb:<name>`` answers the last user message with the answer stage (the
  same one `ods ask` runs): the text cites ``[n]``, and the extension fields ``sources`` (what each
  ``[n]`` is) and ``conversation_id`` (send it back as ``conversation_id`` to continue) ride along; the
  configured LLM's id chats with that model. ``kb:<name>+sql:<dataset>[,<dataset>…]`` (documents and
  datasets) and ``sql:<dataset>[,…]`` (datasets only), or the extension field ``datasets``, add questions
  over datasets: the SQL the answer ran and its result table ride along as the extension field ``sql``. ``stream: true`` answers as OpenAI streams: ``data:`` lines
  of ``chat.completion.chunk``, the extension fields on the last chunk, then ``data: [DONE]``.
- A model with an active endpoint (deployed with ``ods models deploy``): chat and completion requests are
  proxied to its endpoint (:mod:`ods.api.proxy`), streams passed through chunk by chunk.
- ``POST /v1/completions``: a deployed model (proxied), or the configured LLM with the prompt as one user
  message.
- ``POST /v1/embeddings``: the configured embedder, all inputs in one batched call; ``float`` or
  ``base64`` (the ``openai`` client's default) encoding.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Depends, Request
from starlette.responses import Response

from ods.adapters.catalog.records import EndpointRecord
from ods.api.audit import note_question
from ods.api.deps import ServerResources
from ods.api.metrics import ApiMetrics
from ods.api.proxy import EndpointProxy
from ods.api.routes.ask import Citation, answer_in_server, tenant_conversation
from ods.api.routes.openai_models import (
    MAX_DATASETS,
    AssistantMessage,
    ChatCompletion,
    ChatMessageIn,
    ChatRequest,
    Choice,
    CompletionChoice,
    CompletionRequest,
    CompletionUsage,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    Model,
    ModelList,
    OpenAIError,
    SqlAnswer,
    TextCompletion,
)
from ods.api.streaming import event_stream, run_streaming
from ods.api.tenancy import CallerTenant, owned_knowledge_base, tenant_dataset_refs
from ods.domain.chat import ChatMessage, Role, Usage
from ods.domain.names import check_name
from ods.domain.refs import parse_dataset_ref
from ods.errors import NotFoundError, OdsError
from ods.stages.answer import Answer

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIError, "description": "Bad input: malformed JSON, a wrong field, a bad name."},
    404: {
        "model": OpenAIError,
        "description": "Unknown model (code model_not_found), knowledge base or dataset (not_found).",
    },
    413: {"model": OpenAIError, "description": "Body over ODS_API__MAX_BODY_BYTES."},
    500: {"model": OpenAIError, "description": "Unexpected: the message names the request id to quote."},
    502: {"model": OpenAIError, "description": "A deployed model's endpoint failed (code upstream_error)."},
    503: {
        "model": OpenAIError,
        "description": "The catalog, Milvus or a model is unavailable; a deployed model's endpoint does not "
        "answer (code model_unavailable).",
    },
}
router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses=_ERRORS)
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "With stream: true, SSE chunks."}
}

KB_PREFIX = "kb:"
SQL_PREFIX = "sql:"
SQL_JOIN = "+" + SQL_PREFIX
MAX_SQL_ROWS = 50
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_CHARS = 100_000


# -- models ------------------------------------------------------------------------------------------------


@router.get("/models", summary="Models and knowledge bases to chat with", response_model=ModelList)
def list_models(resources: ServerResources, tenant: CallerTenant) -> ModelList:
    """Knowledge bases (``kb:<name>``), datasets (``sql:<dataset>``), the configured LLM and embedder, and
    models with an active endpoint, of the caller's tenant. ``kb:<name>+sql:<dataset>[,…]`` is answered
    too, but not listed."""
    catalog, settings = resources.catalog.for_tenant(tenant), resources.settings
    started = int(time.time())
    models = [
        Model(
            id=KB_PREFIX + record.name,
            created=int(record.created_at.timestamp()),
            owned_by="ods-knowledge-base",
        )
        for record in catalog.list_knowledge_bases(tenant=tenant)
    ]
    models += [
        Model(id=SQL_PREFIX + record.name, created=int(record.created_at.timestamp()), owned_by="ods-dataset")
        for record in catalog.list_datasets(include_archived=False, tenant=tenant)
        if record.latest_version is not None
    ]
    models += [
        Model(id=_llm_id(resources), created=started, owned_by="ods-llm"),
        Model(id=settings.embedding.model, created=started, owned_by="ods-embedding"),
    ]
    listed = {model.id for model in models}
    owned = {model.name for model in catalog.list_models() if model.tenant == tenant}
    for endpoint in catalog.list_endpoints(status="active"):
        if endpoint.model_name in owned and endpoint.model_name not in listed:
            listed.add(endpoint.model_name)
            models.append(
                Model(
                    id=endpoint.model_name,
                    created=int(endpoint.created_at.timestamp()),
                    owned_by="ods-endpoint",
                )
            )
    return ModelList(data=models)


def _llm_id(resources: ServerResources) -> str:
    """The id the configured LLM answers to: its folder's name for a local model given by path, else the
    configured name (an OpenAI endpoint that cannot be resolved yet still lists under it)."""
    try:
        return resources.llm.model_id
    except OdsError:
        return resources.settings.llm.model


# -- deployed models -------------------------------------------------------------------------------------


async def raw_json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object as the client sent it (a deployed model gets fields ods does not parse)."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


RawBody = Annotated[dict[str, Any], Depends(raw_json_body)]


def _deployed_endpoint(resources: ServerResources, model: str, tenant: str) -> EndpointRecord | None:
    """The active endpoint of ``tenant``'s deployed model named ``model``, if it has one (another
    tenant's model is answered as one not deployed)."""
    endpoint = resources.catalog.for_tenant(tenant).active_endpoint(model)
    if endpoint is None:
        return None
    owner = next(
        (
            item
            for item in resources.catalog.for_tenant(tenant).list_models()
            if item.name == endpoint.model_name
        ),
        None,
    )
    return endpoint if owner is not None and owner.tenant == tenant else None


def _forward(http: Request, endpoint: EndpointRecord, body: dict[str, Any]) -> Response:
    """The request as it came, answered by the deployed model's endpoint (the server's proxy)."""
    proxy: EndpointProxy = http.app.state.proxy
    return proxy.forward(http.url.path, endpoint, body, http.app.state.metrics)


# -- chat --------------------------------------------------------------------------------------------------


def _usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _sql_answer(answer: Answer) -> SqlAnswer | None:
    run = answer.sql
    if run is None:
        return None
    return SqlAnswer(
        datasets=list(run.datasets),
        query=run.sql,
        columns=list(run.columns),
        rows=[list(row) for row in run.rows[:MAX_SQL_ROWS]],
        truncated=run.truncated or len(run.rows) > MAX_SQL_ROWS,
        error=run.error,
    )


def _citations(answer: Answer) -> list[Citation]:
    fields = set(Citation.model_fields)
    return [
        Citation(**{key: value for key, value in asdict(source).items() if key in fields})
        for source in answer.citations
    ]


@router.post(
    "/chat/completions",
    summary="Chat with a knowledge base (kb:<name>), datasets (sql:<dataset>) or the configured LLM",
    response_model=ChatCompletion,
    responses=_STREAMED,
)
def chat_completions(
    request: ChatRequest, body: RawBody, http: Request, resources: ServerResources, tenant: CallerTenant
) -> Any:
    """An OpenAI chat completion; ``kb:<name>`` (and/or ``sql:<dataset>``) answers with citations (and
    the SQL it ran) and keeps the turn; a deployed model's request goes to its endpoint as it came."""
    question = next((message.text() for message in reversed(request.messages) if message.role == "user"), "")
    if request.model.startswith((KB_PREFIX, SQL_PREFIX)):
        note_question(http, question)
        kb, datasets = _answer_sources(resources, request.model, request.datasets, tenant)
        conversation_id = tenant_conversation(resources, request.conversation_id, question, tenant)
        run = _kb_answer(resources, kb, datasets, question, conversation_id, http, tenant)
    elif request.datasets is not None:
        raise OdsError(
            f"datasets is only for kb:<name> or sql:<dataset> models, not {request.model!r}; ask with "
            "model sql:<dataset> or kb:<name>+sql:<dataset>"
        )
    elif request.model in (resources.settings.llm.model, _llm_id(resources)):
        run = _llm_answer(resources, request)
    elif (endpoint := _deployed_endpoint(resources, request.model, tenant)) is not None:
        return _forward(http, endpoint, body)
    else:
        raise NotFoundError(
            f"model {request.model!r} is not answered here; chat with kb:<name>, a deployed model or "
            f"{_llm_id(resources)!r} (GET /v1/models lists them)"
        )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if request.stream:
        return event_stream(_stream(run, completion_id, request.model, http.app.state.metrics))
    result = run(None)
    _count_tokens(http.app.state.metrics, result)
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=request.model,
        choices=[Choice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)],
        usage=_usage(result.usage),
        sources=result.sources,
        conversation_id=result.conversation_id,
        sql=result.sql,
    )


def _answer_sources(
    resources: ServerResources, model: str, extra: list[str] | None, tenant: str
) -> tuple[str | None, list[str] | None]:
    """The knowledge base and the dataset refs a ``kb:``/``sql:`` model id (plus the ``datasets`` field)
    names, each name checked (400 naming the part) and found among ``tenant``'s (404) before an answer or
    a stream starts; ``datasets: []`` becomes every registered dataset of ``tenant``."""
    kb: str | None = None
    listed: str | None
    if model.startswith(KB_PREFIX):
        kb_part, joined, listed_part = model.removeprefix(KB_PREFIX).partition(SQL_JOIN)
        kb = check_name("knowledge base", kb_part)
        listed = listed_part if joined else None
    else:
        listed = model.removeprefix(SQL_PREFIX)
    refs = [] if listed is None else listed.split(",")
    if listed is not None and not all(ref.strip() for ref in refs):
        raise OdsError(
            f"model {model!r} names an empty dataset; write sql:<dataset>[,<dataset>…], e.g. sql:sales"
        )
    # datasets: [] (the field only) asks every registered dataset, as /api/v1/ask does
    named = None if listed is None and extra is None else list(dict.fromkeys([*refs, *(extra or ())]))
    for ref in named or ():
        check_name("dataset", parse_dataset_ref(ref)[0])
    if named is not None and len(named) > MAX_DATASETS:
        raise OdsError(f"{len(named)} datasets named; ask over at most {MAX_DATASETS} at once")
    if kb is not None:
        owned_knowledge_base(resources.catalog.for_tenant(tenant), kb, tenant)  # 404 before a stream starts
    if named is not None:
        named = tenant_dataset_refs(resources.catalog.for_tenant(tenant), named, tenant)
    for ref in named or ():
        resources.catalog.for_tenant(tenant).get_dataset_version(*parse_dataset_ref(ref))
    return kb, named


@dataclass(frozen=True)
class _Reply:
    """What a chat turn produced, whoever wrote it."""

    text: str
    model: str
    usage: Usage
    finish_reason: Literal["stop", "length"] = "stop"
    sources: list[Citation] = field(default_factory=list)
    conversation_id: str | None = None
    sql: SqlAnswer | None = None


Run = Callable[[Callable[[str], None] | None], _Reply]


def _kb_answer(
    resources: ServerResources,
    kb: str | None,
    datasets: list[str] | None,
    question: str,
    conversation_id: str | None,
    http: Request,
    tenant: str,
) -> Run:
    """The answer stage over ``kb`` and/or ``datasets``: documents only, both (SQL and retrieval), or SQL
    only when no knowledge base is named."""
    mode: Literal["auto", "sql", "both"] = "auto" if datasets is None else ("both" if kb else "sql")
    if not question.strip():
        raise OdsError("the chat has no user message with text; send the question as the last user message")

    def run(on_text: Callable[[str], None] | None) -> _Reply:
        answer = answer_in_server(
            resources,
            http,
            question,
            kb=kb,
            datasets=datasets,
            conversation_id=conversation_id,
            mode=mode,
            on_text=on_text,
            tenant=tenant,
        )
        return _Reply(
            text=answer.text,
            model=answer.model or "quoted-evidence",
            usage=answer.usage,
            sources=_citations(answer),
            conversation_id=answer.conversation_id,
            sql=_sql_answer(answer),
        )

    return run


def _llm_answer(resources: ServerResources, request: ChatRequest) -> Run:
    roles: dict[str, Role] = {
        "system": "system",
        "developer": "system",
        "user": "user",
        "assistant": "assistant",
    }
    messages = [
        ChatMessage(roles[message.role], message.text())
        for message in request.messages
        if message.role in roles
    ]
    max_tokens = request.max_completion_tokens or request.max_tokens or resources.settings.answer.max_tokens
    in_process = resources.settings.llm.kind == "local"

    def run(on_text: Callable[[str], None] | None) -> _Reply:
        with resources.model_lock if in_process else nullcontext():
            completion = resources.llm.complete(
                messages, max_tokens=max_tokens, temperature=request.temperature or 0.0, on_text=on_text
            )
        return _Reply(
            text=completion.text,
            model=completion.model,
            usage=completion.usage,
            finish_reason="length" if completion.finish_reason == "length" else "stop",
        )

    return run


def _count_tokens(metrics: ApiMetrics, reply: _Reply) -> None:
    metrics.count_tokens(reply.model, reply.usage.prompt_tokens, reply.usage.completion_tokens)


def _stream_error(error: Exception) -> str:
    message = " ".join(str(error).split()) if isinstance(error, OdsError) else "the answer failed"
    return f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"


def _stream(run: Run, completion_id: str, model: str, metrics: ApiMetrics) -> Iterator[str]:
    """OpenAI's SSE: a role chunk, content chunks as the answer is written, a last chunk with the finish
    reason, usage and the extension fields, then ``[DONE]``."""
    pieces = run_streaming(run, thread_name="ods-api-chat-stream")

    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for item in pieces:
        if isinstance(item, str):
            if item:
                yield chunk({"content": item})
        elif isinstance(item, _Reply):
            _count_tokens(metrics, item)
            yield chunk(
                {},
                item.finish_reason,
                usage=_usage(item.usage).model_dump(),
                sources=[source.model_dump() for source in item.sources],
                conversation_id=item.conversation_id,
                sql=None if item.sql is None else item.sql.model_dump(mode="json"),
            )
        else:
            yield _stream_error(item)
    yield "data: [DONE]\n\n"


# -- completions -------------------------------------------------------------------------------------------


@router.post(
    "/completions",
    summary="Complete a prompt with a deployed model or the configured LLM",
    response_model=TextCompletion,
    responses=_STREAMED,
)
def completions(
    request: CompletionRequest, body: RawBody, http: Request, resources: ServerResources, tenant: CallerTenant
) -> Any:
    """A deployed model's completion, proxied to its endpoint as the request came; the configured LLM
    answers the prompt as one user message (its chat template applied)."""
    if request.model.startswith((KB_PREFIX, SQL_PREFIX)):
        raise OdsError(
            f"model {request.model!r} answers chats only; send the question to /v1/chat/completions",
        )
    is_llm = request.model in (resources.settings.llm.model, _llm_id(resources))
    if not is_llm and (endpoint := _deployed_endpoint(resources, request.model, tenant)) is not None:
        return _forward(http, endpoint, body)
    if not is_llm:
        raise NotFoundError(
            f"model {request.model!r} is not answered here; complete with a deployed model or "
            f"{_llm_id(resources)!r} (GET /v1/models lists them)"
        )
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1 or not prompts[0].strip():
        raise OdsError(
            f"prompt must be one non-blank text, got {len(prompts)} prompt(s); send one per request"
        )
    chat = ChatRequest(
        model=request.model,
        messages=[ChatMessageIn(role="user", content=prompts[0])],
        max_tokens=request.max_tokens,
        temperature=request.temperature,
    )
    run = _llm_answer(resources, chat)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    if request.stream:
        return event_stream(_completion_stream(run, completion_id, request.model, http.app.state.metrics))
    result = run(None)
    _count_tokens(http.app.state.metrics, result)
    return TextCompletion(
        id=completion_id,
        created=int(time.time()),
        model=request.model,
        choices=[CompletionChoice(text=result.text, finish_reason=result.finish_reason)],
        usage=_usage(result.usage),
    )


def _completion_stream(run: Run, completion_id: str, model: str, metrics: ApiMetrics) -> Iterator[str]:
    """OpenAI's completion SSE: ``text_completion`` chunks as the text is written, a last one with the
    finish reason and usage, then ``[DONE]``."""
    created = int(time.time())

    def chunk(text: str, finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        body = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    for item in run_streaming(run, thread_name="ods-api-chat-stream"):
        if isinstance(item, str):
            if item:
                yield chunk(item)
        elif isinstance(item, _Reply):
            _count_tokens(metrics, item)
            yield chunk("", item.finish_reason, usage=_usage(item.usage).model_dump())
        else:
            yield _stream_error(item)
    yield "data: [DONE]\n\n"


# -- embeddings --------------------------------------------------------------------------------------------


@router.post("/embeddings", summary="Embed texts with the configured embedder", response_model=EmbeddingList)
def embeddings(request: Annotated[EmbeddingRequest, Body()], resources: ServerResources) -> EmbeddingList:
    """One normalised vector per input, all inputs in one batched call."""
    texts = [request.input] if isinstance(request.input, str) else request.input
    if request.model != resources.settings.embedding.model:
        raise NotFoundError(
            f"model {request.model!r} is not an embedding model here; use {resources.settings.embedding.model!r}"
        )
    if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
        raise OdsError(f"input must hold 1 to {MAX_EMBEDDING_INPUTS} texts, got {len(texts)}")
    for position, text in enumerate(texts):
        if not text.strip() or len(text) > MAX_EMBEDDING_CHARS:
            raise OdsError(
                f"input[{position}] must be non-blank text of at most {MAX_EMBEDDING_CHARS:,} characters"
            )
    with resources.model_lock:
        embedder = resources.embedder
        if request.dimensions is not None and request.dimensions != embedder.dimension:
            raise OdsError(
                f"dimensions {request.dimensions} is not available: {request.model!r} makes "
                f"{embedder.dimension}-dimensional vectors; leave dimensions out"
            )
        vectors = embedder.embed(texts)
        tokens = sum(embedder.count_tokens(texts))
    encoded: list[list[float] | str]
    if request.encoding_format == "base64":
        encoded = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
    else:
        encoded = [row.astype(np.float64).tolist() for row in vectors]
    return EmbeddingList(
        data=[Embedding(index=position, embedding=vector) for position, vector in enumerate(encoded)],
        model=request.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
