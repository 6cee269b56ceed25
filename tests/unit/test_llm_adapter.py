"""LLM adapters' logic: URL normalisation, error mapping, retries, streaming, factory selection.

The OpenAI-compatible client talks to a small scripted HTTP server in a thread (an injected fake
endpoint); the real servers and the real model are exercised in tests/integration/test_llm.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from ods.adapters.models.llm import (
    PACKAGED_MODEL_ID,
    LLMAuthenticationError,
    LLMError,
    LLMUnavailableError,
    OpenAIChatLLM,
    ResolvedEndpoint,
    TransformersLLM,
    UnknownModelError,
    normalise_base_url,
)
from ods.domain.chat import ChatMessage, Usage
from ods.factories import build_llm
from ods.settings import LLMSettings, load_settings
from tests.support.http_fakes import FakeHTTPServer

MODEL = "served-model"
API_KEY = "sk-secret-value-123"
QUESTION = [ChatMessage("user", "What is the capital of France?")]


@dataclass
class Reply:
    """One scripted answer of the fake server to a chat completion request."""

    status: int = 200
    body: Any = None  # JSON-serialisable; None: a normal completion
    headers: dict[str, str] = field(default_factory=dict)
    sse: list[dict[str, Any]] | None = None  # stream these chunks as server-sent events
    hang: bool = False  # answer nothing until the test ends


def completion_body(text: str = "Paris.", usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return body


def chunk(content: str | None = None, finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    data: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        data["usage"] = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    return data


class FakeOpenAIServer:
    """Answers /v1/chat/completions from a script of replies and /v1/models from a list."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.models: list[str] | None = [MODEL, "other-model"]  # None: /v1/models answers 404
        self.release = threading.Event()
        self._server = FakeHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models" and fake.models is not None:
                    data = [
                        {"id": name, "object": "model", "created": 0, "owned_by": "t"} for name in fake.models
                    ]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                fake.requests.append(json.loads(self.rfile.read(length)))
                fake.authorizations.append(self.headers.get("Authorization"))
                reply = fake.replies.popleft() if fake.replies else Reply()
                if reply.hang:
                    fake.release.wait(30)
                    return
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                elif reply.sse is not None:
                    self._sse(reply.sse)
                else:
                    body = completion_body() if reply.body is None else reply.body
                    self._json(reply.status, body, reply.headers)

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _sse(self, chunks: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for item in chunks:
                    self.wfile.write(f"data: {json.dumps(item)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer()
    fake.start()
    yield fake
    fake.stop()


def client(server: FakeOpenAIServer, **options: Any) -> OpenAIChatLLM:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout_s", 5.0)
    return OpenAIChatLLM(server.base_url, MODEL, **options)


# --- URL normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/", " http://h:8000/v1 "],
)
def test_base_url_is_accepted_with_or_without_v1(given: str) -> None:
    assert normalise_base_url(given) == "http://h:8000/v1"


def test_base_url_keeps_a_path_prefix_and_https() -> None:
    assert normalise_base_url("https://gw.example/llm/") == "https://gw.example/llm/v1"


@pytest.mark.parametrize("given", ["h:8000", "ftp://h/v1", "http://", ""])
def test_base_url_without_http_scheme_is_refused_naming_the_setting(given: str) -> None:
    with pytest.raises(LLMError, match="ODS_LLM__ENDPOINT"):
        normalise_base_url(given)


# --- completions -------------------------------------------------------------------------------------


def test_completion_sends_the_conversation_and_returns_text_usage_and_timing(
    server: FakeOpenAIServer,
) -> None:
    llm = client(server, api_key=API_KEY)
    messages = [ChatMessage("system", "Be brief."), *QUESTION]

    completion = llm.complete(messages, max_tokens=12, temperature=0.3)

    assert completion.text == "Paris."
    assert completion.model == MODEL
    assert completion.usage == Usage(12, 3)
    assert completion.finish_reason == "stop"
    assert completion.seconds > 0
    sent = server.requests[0]
    assert sent["model"] == MODEL
    assert sent["max_tokens"] == 12
    assert sent["temperature"] == 0.3
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert server.authorizations == [f"Bearer {API_KEY}"]


def test_completion_without_usage_reports_zero_tokens(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(body=completion_body(usage=False)))

    assert client(server).complete(QUESTION).usage == Usage()


def test_invalid_requests_are_refused_before_any_call(server: FakeOpenAIServer) -> None:
    llm = client(server)
    with pytest.raises(ValueError, match="at least one message"):
        llm.complete([])
    with pytest.raises(ValueError, match="max_tokens"):
        llm.complete(QUESTION, max_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        llm.complete(QUESTION, temperature=-1)
    assert server.requests == []


# --- streaming ---------------------------------------------------------------------------------------


def test_streaming_hands_each_delta_over_and_returns_their_concatenation(server: FakeOpenAIServer) -> None:
    server.replies.append(
        Reply(sse=[chunk(""), chunk("Par"), chunk("is"), chunk("."), chunk(finish="stop", usage=True)])
    )
    deltas: list[str] = []

    completion = client(server).complete(QUESTION, on_text=deltas.append)

    assert deltas == ["Par", "is", "."]
    assert completion.text == "Paris."
    assert completion.usage == Usage(9, 3)
    assert completion.finish_reason == "stop"
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_streaming_usage_in_a_separate_final_chunk_is_read(server: FakeOpenAIServer) -> None:
    usage_only = {**chunk(), "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    server.replies.append(Reply(sse=[chunk("A"), chunk("B", finish="length"), usage_only]))

    completion = client(server).complete(QUESTION, on_text=lambda _: None)

    assert completion.text == "AB"
    assert completion.usage == Usage(4, 2)
    assert completion.finish_reason == "length"


def test_streaming_without_usage_counts_the_deltas(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(sse=[chunk("one"), chunk(" two"), chunk(" three", finish="stop")]))

    completion = client(server).complete(QUESTION, on_text=lambda _: None)

    assert completion.usage == Usage(prompt_tokens=0, completion_tokens=3)


def test_server_rejecting_stream_options_is_asked_again_without_them(server: FakeOpenAIServer) -> None:
    rejected = {"error": {"message": "Unrecognized request argument supplied: stream_options"}}
    server.replies.extend([Reply(status=400, body=rejected), Reply(sse=[chunk("ok", finish="stop")])])

    completion = client(server).complete(QUESTION, on_text=lambda _: None)

    assert completion.text == "ok"
    assert "stream_options" in server.requests[0]
    assert "stream_options" not in server.requests[1]


def test_a_failing_stream_consumer_sees_its_own_error(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(sse=[chunk("a"), chunk("b"), chunk("c", finish="stop")]))
    received: list[str] = []

    def consume(delta: str) -> None:
        received.append(delta)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        client(server).complete(QUESTION, on_text=consume)

    assert received == ["a"]


# --- retries and availability ------------------------------------------------------------------------


def test_transient_503_is_retried_then_succeeds(server: FakeOpenAIServer) -> None:
    busy = Reply(status=503, body={"error": {"message": "loading"}}, headers={"retry-after-ms": "1"})
    server.replies.extend([busy, busy])

    completion = client(server, max_retries=3).complete(QUESTION)

    assert completion.text == "Paris."
    assert len(server.requests) == 3


def test_429_that_persists_through_every_retry_is_unavailable(server: FakeOpenAIServer) -> None:
    limited = Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after-ms": "1"})
    server.replies.extend([limited] * 3)

    with pytest.raises(LLMUnavailableError, match=r"HTTP 429 \(after 2 retries\)") as raised:
        client(server, max_retries=2).complete(QUESTION)

    assert server.base_url in str(raised.value)
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(status=400, body={"error": {"message": "prompt too long"}}))

    with pytest.raises(LLMError, match=r"HTTP 400.*prompt too long"):
        client(server, max_retries=3).complete(QUESTION)

    assert len(server.requests) == 1


def test_unreachable_server_names_the_url_and_the_setting() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = OpenAIChatLLM(f"http://127.0.0.1:{port}", MODEL, max_retries=1, timeout_s=2)

    with pytest.raises(LLMUnavailableError, match="ODS_LLM__ENDPOINT") as raised:
        llm.complete(QUESTION)

    assert f"http://127.0.0.1:{port}/v1" in str(raised.value)
    assert "after 1 retries" in str(raised.value)


def test_server_that_does_not_answer_in_time_is_unavailable(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(hang=True))

    with pytest.raises(LLMUnavailableError, match=r"did not answer within 0.3 s.*ODS_LLM__TIMEOUT_S"):
        client(server, timeout_s=0.3).complete(QUESTION)


def test_stream_that_stalls_is_unavailable(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(hang=True))

    with pytest.raises(LLMUnavailableError, match="did not answer"):
        client(server, timeout_s=0.3).complete(QUESTION, on_text=lambda _: None)


# --- errors for people -------------------------------------------------------------------------------


def test_unknown_model_404_lists_the_models_the_server_serves(server: FakeOpenAIServer) -> None:
    server.replies.append(Reply(status=404, body={"error": {"message": "The model `nope` does not exist."}}))
    llm = OpenAIChatLLM(server.base_url, "nope", max_retries=0)

    with pytest.raises(UnknownModelError) as raised:
        llm.complete(QUESTION)

    message = str(raised.value)
    assert "'nope'" in message
    assert f"'{MODEL}', 'other-model'" in message
    assert "ODS_LLM__MODEL" in message


def test_unknown_model_400_as_transformers_serve_sends_it_is_recognised(server: FakeOpenAIServer) -> None:
    pinned = {"detail": f"Server is pinned to '{MODEL}'; requested 'nope'."}
    server.replies.append(Reply(status=400, body=pinned))
    llm = OpenAIChatLLM(server.base_url, "nope", max_retries=0)

    with pytest.raises(UnknownModelError, match=f"does not serve model 'nope'; it serves '{MODEL}'"):
        llm.complete(QUESTION, on_text=lambda _: None)


def test_404_when_models_cannot_be_listed_points_at_model_and_endpoint(server: FakeOpenAIServer) -> None:
    server.models = None
    server.replies.append(Reply(status=404, body={"error": {"message": "not here"}}))

    with pytest.raises(UnknownModelError, match=r"cannot list its models.*ODS_LLM__MODEL.*ODS_LLM__ENDPOINT"):
        client(server).complete(QUESTION)


def test_401_says_to_set_the_api_key_and_never_shows_it(server: FakeOpenAIServer) -> None:
    # A careless server echoing the key back must not leak it into our message.
    server.replies.append(Reply(status=401, body={"error": {"message": f"invalid key {API_KEY}"}}))

    with pytest.raises(LLMAuthenticationError, match="ODS_LLM__API_KEY") as raised:
        client(server, api_key=API_KEY).complete(QUESTION)

    assert API_KEY not in str(raised.value)
    assert "***" in str(raised.value)


def test_served_models_lists_the_server_models(server: FakeOpenAIServer) -> None:
    assert client(server).served_models() == [MODEL, "other-model"]


# --- factory -----------------------------------------------------------------------------------------


def test_default_settings_build_the_packaged_model_without_loading_it() -> None:
    llm = build_llm(LLMSettings(timeout_s=7))

    assert isinstance(llm, TransformersLLM)
    assert llm.model_id == PACKAGED_MODEL_ID


def test_local_model_folder_or_gguf_file_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF")

    from_folder = build_llm(LLMSettings(model=str(folder)))
    from_gguf = build_llm(LLMSettings(model=str(gguf)))

    assert isinstance(from_folder, TransformersLLM)
    assert from_folder.model_id == "my-model"
    assert isinstance(from_gguf, TransformersLLM)
    assert from_gguf.model_id == "other.gguf"


def test_unknown_local_model_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=r"cannot be downloaded offline.*ODS_LLM__MODEL"):
        build_llm(LLMSettings(model=str(tmp_path / "missing")))


def test_openai_kind_uses_the_configured_endpoint_before_asking_the_resolver() -> None:
    asked: list[str] = []

    def resolve(model: str) -> ResolvedEndpoint | None:
        asked.append(model)
        return ResolvedEndpoint("http://resolved:9000")

    llm = build_llm(
        LLMSettings(kind="openai", model="m", endpoint="http://configured:8000/"), resolve_endpoint=resolve
    )

    assert isinstance(llm, OpenAIChatLLM)
    assert llm.base_url == "http://configured:8000/v1"
    assert llm.model_id == "m"
    assert asked == []


def test_openai_kind_without_endpoint_uses_the_deployed_model_endpoint() -> None:
    asked: list[str] = []

    def resolve(model: str) -> ResolvedEndpoint | None:
        asked.append(model)
        return ResolvedEndpoint("http://deployed:8000/v1", served_model="/cache/abc123")

    llm = build_llm(LLMSettings(kind="openai", model="ticket-classifier"), resolve_endpoint=resolve)

    assert isinstance(llm, OpenAIChatLLM)
    assert llm.base_url == "http://deployed:8000/v1"
    assert llm.model_id == "/cache/abc123", "requests carry the id the server serves the model under"
    assert asked == ["ticket-classifier"]


@pytest.mark.parametrize("resolver", [None, lambda model: None])
def test_openai_kind_with_no_endpoint_anywhere_says_what_to_do(resolver: Any) -> None:
    with pytest.raises(LLMError, match=r"'ghost'.*ODS_LLM__ENDPOINT.*deploy the model"):
        build_llm(LLMSettings(kind="openai", model="ghost"), resolve_endpoint=resolver)


def test_openai_kind_without_endpoint_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODS_LLM__KIND", "openai")
    monkeypatch.delenv("ODS_LLM__ENDPOINT", raising=False)

    settings = load_settings()

    assert settings.llm.kind == "openai"
    assert settings.llm.endpoint is None


def test_api_key_shows_in_neither_the_settings_nor_the_client_repr() -> None:
    settings = LLMSettings(kind="openai", endpoint="http://h:1", api_key=API_KEY)  # type: ignore[arg-type]

    llm = build_llm(settings)

    assert isinstance(llm, OpenAIChatLLM)
    assert API_KEY not in repr(settings)
    assert API_KEY not in repr(llm)
