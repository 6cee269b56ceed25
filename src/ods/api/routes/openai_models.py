"""The request and response bodies of the OpenAI-compatible gateway (:mod:`ods.api.routes.openai_gateway`),
in OpenAI's own shapes plus ods's extension fields; their class names are the OpenAPI schema names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ods.api.routes.ask import Citation, ResultTable

MAX_DATASETS = 50


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="What was wrong, in one line.")
    type: str = Field(description="invalid_request_error, requests (rate limited) or server_error.")
    param: str | None = Field(default=None, description="The request field at fault, when one is.")
    code: str | None = Field(
        default=None,
        description="model_not_found, not_found, invalid_api_key, rate_limit_exceeded, or null.",
    )


class OpenAIError(BaseModel):
    """An error in OpenAI's shape, which its clients turn into their own exceptions."""

    error: OpenAIErrorDetail


class Model(BaseModel):
    id: str = Field(
        description="What to pass as `model`: kb:<name>, sql:<dataset>, a model name, or an embedding model."
    )
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the model or knowledge base was created.")
    owned_by: str = Field(
        description="ods-knowledge-base, ods-dataset, ods-llm, ods-embedding or ods-endpoint."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat request (fields it has that ods does not use are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1,
        description="kb:<name>, kb:<name>+sql:<dataset>[,<dataset>…], sql:<dataset>[,…], a deployed model, "
        "or the configured LLM's id (GET /v1/models).",
    )
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=200)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)
    conversation_id: str | None = Field(
        default=None,
        max_length=64,
        description="Extension (kb:/sql: only): continue this conversation; each answer returns its id.",
    )
    datasets: list[str] | None = Field(
        default=None,
        max_length=MAX_DATASETS,
        description="Extension (kb:/sql: only): registered datasets (NAME or NAME@VERSION) to answer from "
        "with SQL as well, added to those the model id names; [] for every registered one.",
    )


class SqlAnswer(ResultTable):
    """The SQL an answer ran over the datasets and its result table."""

    datasets: list[str] = Field(description="The dataset tables the SQL could read.")
    query: str | None = Field(description="The SQL statement; null when the model wrote none.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    sources: list[Citation] = Field(
        default_factory=list, description="Extension (kb:): the sources the answer cites as [n]."
    )
    conversation_id: str | None = Field(
        default=None, description="Extension (kb:/sql:): the conversation the turn was kept in."
    )
    sql: SqlAnswer | None = Field(
        default=None,
        description="Extension (sql:, or datasets given): the SQL the answer ran and its result table.",
    )


class CompletionRequest(BaseModel):
    """OpenAI's (legacy) completion request (fields ods does not use are accepted and ignored, and passed
    on to a deployed model)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1, description="A deployed model, or the configured LLM's id (GET /v1/models)."
    )
    prompt: str | list[str] = Field(description="The prompt; a list must hold one prompt (no batches here).")
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] = "stop"


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="The configured embedding model (GET /v1/models).")
    input: str | list[str] = Field(description="A text or a list of texts (token arrays are not accepted).")
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="float lists, or base64 of little-endian float32 (the openai client's default).",
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Must be the model's dimension when given."
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
