"""`ods serve`'s server as a client meets it: envelope, request ids, errors, limits, health, metrics, docs.

One real server (uvicorn on a free loopback port) per module over a real platform: SQLite catalog, local
object store, Milvus Lite, the packaged embedder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ods.adapters.workers.processes import free_port
from ods.settings import load_settings
from tests.support.api_server import RunningApi, running_api, served_platform


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with served_platform(tmp_path_factory.mktemp("api-server")) as running:
        yield running


@pytest.fixture
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


def test_success_answers_in_the_envelope_with_the_request_id(client: httpx.Client) -> None:
    generated = client.get("/api/v1/knowledge-bases")
    echoed = client.get("/api/v1/knowledge-bases", headers={"X-Request-ID": "trace-42.a"})
    unsafe = client.get("/api/v1/knowledge-bases", headers={"X-Request-ID": "a b\tc"})

    body = generated.json()
    assert generated.status_code == 200
    assert (body["code"], body["message"]) == (0, "success")
    assert [kb["name"] for kb in body["data"]] == ["policies"]
    assert body["request_id"] == generated.headers["x-request-id"] and len(body["request_id"]) == 32
    assert body["timestamp"].endswith("Z")
    assert echoed.headers["x-request-id"] == "trace-42.a" == echoed.json()["request_id"]
    assert unsafe.headers["x-request-id"] != "a b\tc"


def test_bad_input_is_40001_naming_the_field(client: httpx.Client) -> None:
    malformed = client.post(
        "/api/v1/knowledge-bases/policies/search",
        content=b'{"query": "returns",',
        headers={"Content-Type": "application/json"},
    )
    wrong_type = client.post("/api/v1/knowledge-bases/policies/search", json={"query": "x", "top_k": "many"})
    wrong_mode = client.post("/api/v1/knowledge-bases/policies/search", json={"query": "x", "mode": "fuzzy"})
    bad_page = client.get("/api/v1/datasets", params={"page_size": 0})

    for response in (malformed, wrong_type, wrong_mode, bad_page):
        body = response.json()
        assert response.status_code == 400, response.text
        assert body["code"] == 40001 and body["message"].startswith("invalid request: ")
        assert body["request_id"] == response.headers["x-request-id"]
    assert "JSON" in malformed.json()["message"]
    assert wrong_type.json()["details"]["field"] == "body.top_k"
    assert "integer" in wrong_type.json()["details"]["reason"]
    assert wrong_mode.json()["details"]["field"] == "body.mode"
    assert bad_page.json()["details"]["field"] == "query.page_size"


def test_an_oversized_body_is_refused_before_it_is_parsed(client: httpx.Client) -> None:
    declared = client.post("/api/v1/knowledge-bases/policies/search", json={"query": "x" * 20_000})

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        yield b'{"query": "'
        for _ in range(40):
            yield b"y" * 1000
        yield b'"}'

    chunked = client.post(
        "/api/v1/knowledge-bases/policies/search",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["code"] == 40001
        assert "larger than the limit of 16,384 bytes (ODS_API__MAX_BODY_BYTES)" in response.json()["message"]
        assert response.headers["x-request-id"]


def test_unknown_things_are_40401(client: httpx.Client) -> None:
    route = client.get("/api/v1/nothing-here")
    dataset = client.get("/api/v1/datasets/nope")
    kb = client.post("/api/v1/knowledge-bases/nope/search", json={"query": "returns"})

    for response in (route, dataset, kb):
        assert response.status_code == 404 and response.json()["code"] == 40401, response.text
    assert "no dataset named 'nope'" in dataset.json()["message"]
    assert "'nope'" in kb.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/%2E%2E",
        "/api/v1/datasets/..%5C..%5Cetc",
        "/api/v1/datasets/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/datasets/..%2Fsales/versions/1/rows",
        "/api/v1/knowledge-bases/..%2F..%2Fetc/documents",
        "/api/v1/datasets/sales%00",
        "/api/v1/datasets/%1b%5b31mred",
        "/api/v1/knowledge-bases/Policies/documents",
        "/api/v1/models/a%0Ab",
    ],
)
def test_hostile_names_are_refused_as_bad_input(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    body = response.json()
    assert response.status_code == 400 and body["code"] == 40001, response.text
    assert body["details"]["field"] == "path.name"
    assert "use 1-63 lower-case letters" in body["message"]
    assert "\x00" not in response.text and "\x1b" not in response.text


def test_health_readiness_metrics_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    again = client.get("/readyz")
    client.get("/api/v1/datasets/nope")

    assert ready.status_code == 200, ready.text
    checks = {check["component"]: check["status"] for check in ready.json()["checks"]}
    assert checks == dict.fromkeys(("catalog", "object_store", "milvus", "embedding_model", "llm"), "OK")
    assert again.json()["checked_at"] == ready.json()["checked_at"]  # cached, not checked again

    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'ods_api_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'ods_api_request_duration_seconds_bucket{le="0.005",method="GET",route="/readyz"}' in text
    assert 'ods_api_errors_total{route="/api/v1/datasets/{name}",status="404"}' in text

    schema = client.get("/openapi.json").json()
    for path in (
        "/api/v1/datasets",
        "/api/v1/datasets/{name}",
        "/api/v1/datasets/{name}/versions/{version}/rows",
        "/api/v1/knowledge-bases/{kb}/search",
        "/api/v1/query/execute",
        "/api/v1/models/{name}",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
    ):
        assert path in schema["paths"], path
    assert "Envelope_DatasetPage_" in schema["components"]["schemas"]
    operations = [operation for methods in schema["paths"].values() for operation in methods.values()]
    assert not [operation for operation in operations if "422" in operation["responses"]]  # bad input is 400
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
    assert client.get("/docs").status_code == 200


def test_an_unexpected_failure_is_50001_without_its_details(api: RunningApi, client: httpx.Client) -> None:
    resources = api.resources
    saved = resources.settings
    # Settings the routes cannot use: the warehouse limits become a type the query step never expects.
    resources.settings = saved.model_copy(update={"warehouse": None})
    try:
        response = client.post("/api/v1/query/execute", json={"sql": "SELECT 1"})
    finally:
        resources.settings = saved
    body = response.json()
    assert response.status_code == 500 and body["code"] == 50001, response.text
    assert body["request_id"] in body["message"] and "Traceback" not in response.text
    assert "AttributeError" not in response.text and "warehouse" not in body["message"]


def test_an_unreachable_catalog_is_50301_and_not_ready(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "ods-home",
        catalog={"url": "postgresql+psycopg://reader:hunter2@127.0.0.1:1/ods", "connect_timeout_s": 1},
    )
    with running_api(settings) as down:
        listed = httpx.get(f"{down.base_url}/api/v1/datasets")
        models = httpx.get(f"{down.base_url}/v1/models")
        ready = httpx.get(f"{down.base_url}/readyz", timeout=120)

    assert listed.status_code == 503 and listed.json()["code"] == 50301
    assert "cannot open catalog postgresql+psycopg://reader:***@127.0.0.1:1/ods" in listed.json()["message"]
    assert models.status_code == 503 and models.json()["error"]["type"] == "server_error"
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    assert {check["component"]: check["status"] for check in ready.json()["checks"]}["catalog"] == "FAIL"
    for response in (listed, models, ready):
        assert "hunter2" not in response.text


def test_ods_serve_answers_until_sigterm_then_shuts_down_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "ODS_HOME": str(tmp_path / "ods-home"), "ODS_API__PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "-m", "ods", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = None
        while health is None and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None, server.communicate()[0]
        datasets = httpx.get(f"http://127.0.0.1:{port}/api/v1/datasets")
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=120)[0]
    assert health.json() == {"status": "ok"}
    assert datasets.json()["data"]["total"] == 0  # a fresh home: the catalog was created on first use
    # uvicorn stops serving, ends the app's lifespan (which closes the catalog and the indexes), then
    # re-raises SIGTERM so the exit status says how the process ended.
    assert server.returncode == -signal.SIGTERM, output
    assert f"ods API on http://127.0.0.1:{port}" in output
    assert "Application shutdown complete" in output and "Finished server process" in output
    assert "Traceback" not in output
