"""Model routes of `ods serve`: deploy and undeploy runs, endpoint status, and the gateway's proxy to
deployed models (chat and completions, streamed and not).

One API server for the module. Most tests talk to a small real OpenAI-compatible upstream (FastAPI on
uvicorn, a free loopback port) recorded in the catalog as a model's active endpoint, so what the gateway
passes on can be compared byte for byte with what the upstream sends. One test deploys the tiny causal LM
with a real `transformers serve` through the API, as `ods models deploy` would, and chats with it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ods.adapters.models.server import LocalModelServer
from ods.adapters.workers.processes import free_port
from ods.factories import build_object_store, open_catalog
from ods.settings import Settings, load_settings
from ods.stages.train import MANIFEST, upload_folder
from tests.support.api_server import RunningApi, running_api
from tests.support.tiny_llm import tiny_model_dir

ECHO = "echo"
SERVED_ID = "echo-served"
GONE = "gone"
CREATED = 1_700_000_000


def upstream_app() -> FastAPI:
    """An OpenAI-compatible server that echoes what it was sent, deterministically (fixed ids and times)."""
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if body.get("max_tokens") == 999:
            return JSONResponse(
                {"error": {"message": "max_tokens too large", "type": "invalid_request_error", "code": None}},
                status_code=400,
            )
        if body.get("max_tokens") == 500:
            return JSONResponse({"detail": "engine crashed"}, status_code=500)
        text = f"model={body['model']} extra={body.get('seed_extra')} said={body['messages'][-1]['content']}"
        if not body.get("stream"):
            return {
                "id": "chatcmpl-upstream",
                "object": "chat.completion",
                "created": CREATED,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
            }

        def events() -> Iterator[str]:
            for index, word in enumerate(text.split(" ")):
                delta = {"content": word if index == 0 else " " + word}
                chunk = {
                    "id": "chatcmpl-upstream",
                    "object": "chat.completion.chunk",
                    "created": CREATED,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
                last = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": CREATED}
                yield f"data: {json.dumps({**last, 'model': body['model'], 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def complete(request: Request) -> Any:
        body = await request.json()
        return {
            "id": "cmpl-upstream",
            "object": "text_completion",
            "created": CREATED,
            "model": body["model"],
            "choices": [{"index": 0, "text": f" after {body['prompt']}", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        }

    return app


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(upstream_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="fake-openai-upstream", daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the upstream did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=30)


def record_endpoint(settings: Settings, model: str, url: str, served: str) -> None:
    """A model version with an active endpoint at ``url``, as a deployment records it."""
    with open_catalog(settings) as catalog:
        version = catalog.add_model_version(
            model, trainer="causal-lm-sft", params={}, metrics={}, artifact_uri=f"file:///nowhere/{model}/"
        )
        catalog.add_served_endpoint(
            version.id, backend="transformers", url=url, served_model=served, status="active"
        )


def register_tiny(settings: Settings, folder: Path) -> None:
    """The tiny causal LM as model ``tiny`` v1 (artifacts, manifest last, then the catalog row)."""
    store = build_object_store(settings)
    store.ensure_ready()
    prefix = "models/tiny/k1"
    files = upload_folder(store, folder, prefix)
    manifest = {"model": "tiny", "trainer": "causal-lm-sft", "format": "hf-causal-lm", "files": files}
    store.put_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest).encode(), content_type="application/json")
    with open_catalog(settings) as catalog:
        catalog.add_model_version(
            "tiny", trainer="causal-lm-sft", params={}, metrics={}, artifact_uri=store.uri(prefix) + "/"
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, upstream_url: str) -> Iterator[RunningApi]:
    tiny = tiny_model_dir(tmp_path_factory)  # also the configured LLM: real generation, cheap to load
    settings = load_settings(
        home=tmp_path_factory.mktemp("api-models") / "ods-home", llm={"model": str(tiny)}
    )
    record_endpoint(settings, ECHO, upstream_url, SERVED_ID)
    record_endpoint(settings, GONE, f"http://127.0.0.1:{free_port()}/v1", GONE)  # nothing listens there
    register_tiny(settings, tiny)
    with running_api(settings) as running:
        try:
            yield running
        finally:
            with open_catalog(settings) as catalog:
                for endpoint in catalog.list_endpoints():
                    if endpoint.pid is not None:
                        LocalModelServer().stop(endpoint.pid, grace_s=5)


@pytest.fixture
def client(api: RunningApi) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{api.base_url}/v1", api_key="unused", max_retries=0) as session:
        yield session


def test_a_deployed_model_is_listed_and_its_chat_goes_to_its_endpoint(
    api: RunningApi, client: openai.OpenAI
) -> None:
    listed = {model.id: model.owned_by for model in client.models.list()}
    answer = client.chat.completions.create(
        model=ECHO,
        messages=[{"role": "user", "content": "hello there"}],
        extra_body={"seed_extra": "kept"},
    )

    assert listed[ECHO] == "ods-endpoint"
    assert answer.id == "chatcmpl-upstream" and answer.created == CREATED
    # model rewritten to the served id; a field ods does not parse still reaches the endpoint
    assert answer.choices[0].message.content == f"model={SERVED_ID} extra=kept said=hello there"
    assert answer.usage is not None and answer.usage.total_tokens == 8
    metrics = httpx.get(f"{api.base_url}/metrics", timeout=30).text
    assert f'ods_api_tokens_total{{kind="completion",model="{ECHO}"}}' in metrics


def completion_tokens(api: RunningApi) -> float:
    """The server's count of completion tokens spent by the echo model so far."""
    prefix = f'ods_api_tokens_total{{kind="completion",model="{ECHO}"}} '
    lines = httpx.get(f"{api.base_url}/metrics", timeout=30).text.splitlines()
    return next((float(line.removeprefix(prefix)) for line in lines if line.startswith(prefix)), 0.0)


def test_a_stream_passes_through_byte_for_byte(
    api: RunningApi, upstream_url: str, client: openai.OpenAI
) -> None:
    body = {"model": ECHO, "stream": True, "messages": [{"role": "user", "content": "one two three"}]}
    direct = httpx.post(f"{upstream_url}/chat/completions", json={**body, "model": SERVED_ID}, timeout=30)
    with httpx.stream("POST", f"{api.base_url}/v1/chat/completions", json=body, timeout=30) as proxied:
        pieces = list(proxied.iter_bytes())
        content_type = proxied.headers["content-type"]
    counted = completion_tokens(api)
    streamed = list(
        client.chat.completions.create(
            model=ECHO,
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)

    assert b"".join(pieces) == direct.content and content_type.startswith("text/event-stream")
    assert text == f"model={SERVED_ID} extra=None said=one two three"
    assert streamed[-1].usage is not None and completion_tokens(api) == counted + 7  # the stream's usage


def test_completions_go_to_a_deployed_model(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=ECHO, prompt="once upon", max_tokens=2)

    assert completion.id == "cmpl-upstream" and completion.model == SERVED_ID
    assert (
        completion.choices[0].text == " after once upon" and completion.choices[0].finish_reason == "length"
    )


def test_upstream_errors_come_back_in_openais_shape(api: RunningApi, client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=ECHO, messages=messages, max_tokens=999)
    with pytest.raises(openai.InternalServerError) as crashed:
        client.chat.completions.create(model=ECHO, messages=messages, max_tokens=500)
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model=GONE, messages=messages)
    raw_down = httpx.post(f"{api.base_url}/v1/completions", json={"model": GONE, "prompt": "hi"}, timeout=30)

    assert refused.value.status_code == 400 and "max_tokens too large" in refused.value.message
    assert crashed.value.status_code == 502 and "engine crashed" in crashed.value.message
    assert down.value.status_code == 503
    error = raw_down.json()["error"]
    assert raw_down.status_code == 503 and error["type"] == "server_error"
    assert error["code"] == "model_unavailable" and f"/api/v1/models/{GONE}/status" in error["message"]


def test_status_checks_each_endpoint_now(api: RunningApi) -> None:
    up = httpx.get(f"{api.base_url}/api/v1/models/{ECHO}/status", timeout=30).json()["data"]
    down = httpx.get(f"{api.base_url}/api/v1/models/{GONE}/status", timeout=30).json()["data"]
    unknown = httpx.get(f"{api.base_url}/api/v1/models/nope/status", timeout=30)

    assert up["serving"] is True and [item["healthy"] for item in up["endpoints"]] == [True]
    assert up["endpoints"][0]["served_model"] == SERVED_ID
    assert down["serving"] is False and down["endpoints"][0]["healthy"] is False
    assert unknown.status_code == 404 and unknown.json()["code"] == 40401
    paths = httpx.get(f"{api.base_url}/openapi.json", timeout=30).json()["paths"]
    for path in ("/api/v1/models/deploy", "/api/v1/models/undeploy", "/api/v1/models/{name}/status"):
        assert path in paths, path
    assert "502" in paths["/v1/completions"]["post"]["responses"]


def test_deploy_requests_are_checked_before_a_run_starts(api: RunningApi) -> None:
    unknown = httpx.post(f"{api.base_url}/api/v1/models/deploy", json={"model": "nope"}, timeout=30)
    bad_backend = httpx.post(
        f"{api.base_url}/api/v1/models/deploy", json={"model": "tiny", "backend": "gpu"}, timeout=30
    )
    bad_name = httpx.post(f"{api.base_url}/api/v1/models/deploy", json={"model": "../x"}, timeout=30)

    assert unknown.status_code == 404 and unknown.json()["code"] == 40401
    assert bad_backend.status_code == 400 and bad_backend.json()["details"]["field"] == "body.backend"
    assert bad_name.status_code == 400 and bad_name.json()["code"] == 40001


def wait_for_run(api: RunningApi, run_id: str) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = httpx.get(f"{api.base_url}/api/v1/runs/{run_id}", timeout=30).json()["data"]
        if run["state"] in ("completed", "failed"):
            return run
        time.sleep(0.5)


def test_deploy_status_chat_and_undeploy_through_the_api(api: RunningApi, client: openai.OpenAI) -> None:
    started = httpx.post(
        f"{api.base_url}/api/v1/models/deploy",
        json={"model": "tiny@1", "backend": "transformers", "ready_timeout_s": 180},
        timeout=30,
    )
    assert started.status_code == 202, started.text
    deploy = wait_for_run(api, started.json()["data"]["id"])
    status = httpx.get(f"{api.base_url}/api/v1/models/tiny/status", timeout=30).json()["data"]
    answer = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Say something."}], max_tokens=4
    )
    stopped = httpx.post(f"{api.base_url}/api/v1/models/undeploy", json={"model": "tiny"}, timeout=30)
    undeploy = wait_for_run(api, stopped.json()["data"]["id"])
    after = httpx.get(f"{api.base_url}/api/v1/models/tiny/status", timeout=30).json()["data"]

    assert deploy["state"] == "completed", deploy["error"]
    assert deploy["kind"] == "deploy" and deploy["target"] == "tiny@1"
    assert deploy["result"]["status"] == "active" and deploy["result"]["backend"] == "transformers"
    assert status["serving"] is True and status["endpoints"][0]["id"] == deploy["result"]["endpoint_id"]
    assert answer.choices[0].message.content is not None and answer.usage is not None
    assert answer.usage.completion_tokens >= 1
    assert undeploy["state"] == "completed" and len(undeploy["result"]["stopped"]) == 1
    assert after == {"name": "tiny", "serving": False, "endpoints": []}


def test_completions_on_the_configured_llm_stream_and_not(client: openai.OpenAI) -> None:
    llm = next(model.id for model in client.models.list() if model.owned_by == "ods-llm")
    completion = client.completions.create(model=llm, prompt="The capital of France is", max_tokens=4)
    streamed = list(
        client.completions.create(model=llm, prompt="The capital of France is", max_tokens=4, stream=True)
    )
    with pytest.raises(openai.BadRequestError) as batched:
        client.completions.create(model=llm, prompt=["one", "two"], max_tokens=4)

    assert completion.object == "text_completion" and completion.model == llm
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 4
    assert "".join(chunk.choices[0].text for chunk in streamed) == completion.choices[0].text  # greedy
    assert streamed[-1].choices[0].finish_reason in ("stop", "length") and streamed[-1].usage is not None
    assert "got 2 prompt(s)" in batched.value.message
