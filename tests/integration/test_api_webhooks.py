"""Webhooks end to end: a real receiver (an HTTP server in a thread on a free loopback port, checking every
signature) gets the events the platform writes to its outbox, signed, retried and never twice.

One real server per module (uvicorn with its lifespan, so the dispatcher thread runs) over a SQLite
catalog and the local object store, with retries 50 ms apart. Events come from the real code paths: a
dataset version registered by the prepare stages, a SQL query answered by ``/api/v1/query/execute``.
The dispatcher's schedule itself is checked on an injected clock over both catalog backends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ods.adapters.catalog import Catalog
from ods.adapters.tabular.source import read_table
from ods.adapters.workers.processes import free_port
from ods.api.app import create_app
from ods.api.resources import Resources
from ods.api.webhooks import WebhookDispatcher
from ods.domain.cleaning import apply_cleaning
from ods.domain.profiling import profile_frame
from ods.domain.webhooks import signature_matches
from ods.factories import build_object_store, open_catalog
from ods.settings import Settings, WebhookSettings, load_settings
from ods.stages.prepare import dataset_prefix, fetch_source, load_spec, register_version, write_parquet
from ods.stages.sample_data import write_sales_example
from tests.support.http_fakes import FakeHTTPServer
from tests.support.postgres import temporary_database

SECRET = "receiver-secret-0123456789"


@dataclass
class Receiver:
    """What a webhook receiver got: every request, with whether its signature held."""

    port: int
    statuses: list[int] = field(default_factory=list)
    """Answers to give, in turn; 200 once they run out."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def got(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    """Serve ``receiver`` on its port until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(
                    {
                        "headers": dict(self.headers),
                        "body": body,
                        "signed": signature_matches(SECRET, body, self.headers.get("X-ODS-Signature")),
                        "status": status,
                    }
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = FakeHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def wait_for(condition: Callable[[], Any]) -> Any:
    """Poll ``condition`` until it is truthy (pytest-timeout stops a wait that never ends)."""
    while not (value := condition()):
        time.sleep(0.05)
    return value


@dataclass(frozen=True)
class Api:
    base_url: str
    settings: Settings
    root: Path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-webhooks")
    settings = load_settings(
        home=root / "ods-home",
        api={
            "rate_limit_metadata": 0,
            "rate_limit_query": 0,
            "webhooks": {"retry_base_s": 0.05, "retry_max_s": 0.2, "poll_s": 0.05, "timeout_s": 5},
        },
    )
    resources = Resources(settings)
    port = free_port()
    app = create_app(settings, resources)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="ods-api-webhooks-test", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the API server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield Api(f"http://127.0.0.1:{port}", settings, root)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not any(t.name == "ods-webhook-dispatcher" for t in threading.enumerate())  # stopped cleanly


@pytest.fixture(scope="module")
def client(api: Api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


def register_sales(api: Api, rows: int) -> None:
    """Register a version of dataset ``sales`` through the prepare stages, as the flow's tasks do."""
    _, spec_path = write_sales_example(api.root / f"sales-{rows}", rows=rows)
    loaded = load_spec(str(spec_path), api.settings)
    source = fetch_source(loaded, api.settings)
    cleaned = apply_cleaning(
        read_table(source.data, name=source.name, source=loaded.spec.source), loaded.spec, pii_salt=""
    )
    written = write_parquet(build_object_store(api.settings), dataset_prefix("sales"), cleaned.frame)
    with open_catalog(api.settings) as catalog:
        register_version(
            catalog,
            loaded,
            source,
            written,
            frame=cleaned.frame,
            profile=profile_frame(cleaned.frame, cleaned.pii_kinds),
            validation_rows=[],
            flow_run_id=None,
        )


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def subscribe(client: httpx.Client, url: str, *events: str) -> dict[str, Any]:
    created: dict[str, Any] = data(
        client.post("/api/v1/webhooks", json={"url": url, "events": list(events), "secret": SECRET}), 201
    )
    return created


def deliveries(client: httpx.Client, webhook_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data(client.get(f"/api/v1/webhooks/{webhook_id}"))["deliveries"]
    return found


def query(client: httpx.Client) -> None:
    data(client.post("/api/v1/query/execute", json={"sql": "SELECT COUNT(*) AS n FROM sales"}))


def test_bad_urls_and_unknown_events_are_refused(client: httpx.Client) -> None:
    for url, reason in (("ftp://example.com/x", "must use http or https"), ("http:///x", "names no host")):
        response = client.post("/api/v1/webhooks", json={"url": url, "events": ["dataset.created"]})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == 40001 and reason in body["message"]
        assert body["details"]["field"] == "body.url"
    response = client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["dataset.deleted"]}
    )
    assert response.status_code == 400 and response.json()["code"] == 40001
    assert response.json()["details"]["field"] == "body.events.0"
    response = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": []})
    assert response.status_code == 400 and response.json()["code"] == 40001
    response = client.get("/api/v1/webhooks/999999")
    assert response.status_code == 404 and response.json()["code"] == 40401


def test_registered_dataset_versions_arrive_signed(api: Api, client: httpx.Client) -> None:
    with receiving(Receiver(free_port())) as receiver:
        created = data(
            client.post(
                "/api/v1/webhooks",
                json={
                    "url": receiver.url,
                    "events": ["dataset.created", "dataset.updated"],
                    "secret": SECRET,
                },
            ),
            201,
        )
        assert created["secret"] == SECRET and created["secret_hint"].startswith("rece")
        register_sales(api, rows=100)
        first = wait_for(lambda: receiver.got())[0]
        register_sales(api, rows=120)
        second = wait_for(lambda: receiver.got()[1:])[0]

    for request, event_type, version in ((first, "dataset.created", 1), (second, "dataset.updated", 2)):
        assert request["signed"]
        headers = request["headers"]
        assert headers["X-ODS-Event"] == event_type and headers["Content-Type"] == "application/json"
        assert int(headers["X-ODS-Timestamp"]) > 0 and len(headers["X-ODS-Delivery"]) == 32
        body = json.loads(request["body"])
        assert body["event_type"] == event_type and body["timestamp"].endswith("Z")
        assert body["data"]["dataset"] == "sales" and body["data"]["version"] == version
        assert body["data"]["status"] == "registered"
    assert len(receiver.got()) == 2

    listed = data(client.get("/api/v1/webhooks"))
    assert [item["id"] for item in listed if item["url"] == receiver.url] == [created["id"]]
    assert all("secret" not in item for item in listed)
    log = deliveries(client, created["id"])
    assert [
        (item["event_type"], item["status"], item["attempts"], item["last_status_code"]) for item in log
    ] == [
        ("dataset.updated", "delivered", 1, 200),
        ("dataset.created", "delivered", 1, 200),
    ]
    assert "secret" not in client.get(f"/api/v1/webhooks/{created['id']}").json()["data"]
    data(client.delete(f"/api/v1/webhooks/{created['id']}"))


def test_a_receiver_failing_twice_gets_the_event_once_after_retries(api: Api, client: httpx.Client) -> None:
    register_sales(api, rows=100)  # the table the query reads (already there when the module runs in order)
    with receiving(Receiver(free_port(), statuses=[500, 500])) as receiver:
        webhook = subscribe(client, receiver.url, "query.completed")
        query(client)
        log = wait_for(
            lambda: [item for item in deliveries(client, webhook["id"]) if item["status"] == "delivered"]
        )
        got = receiver.got()
    assert [request["status"] for request in got] == [500, 500, 200]
    assert len({request["headers"]["X-ODS-Delivery"] for request in got}) == 1  # one delivery, three attempts
    assert len({request["body"] for request in got}) == 1 and all(request["signed"] for request in got)
    body = json.loads(got[0]["body"])
    assert body["event_type"] == "query.completed" and body["data"]["row_count"] == 1
    assert log[0]["attempts"] == 3 and log[0]["last_status_code"] == 200 and log[0]["last_error"] is None
    assert log[0]["id"] == got[0]["headers"]["X-ODS-Delivery"]
    data(client.delete(f"/api/v1/webhooks/{webhook['id']}"))


def test_a_receiver_that_is_down_gets_the_event_once_it_is_up(api: Api, client: httpx.Client) -> None:
    register_sales(api, rows=100)
    receiver = Receiver(free_port())  # nothing listens there yet
    webhook = subscribe(client, receiver.url, "query.completed")
    query(client)
    failed = wait_for(lambda: [item for item in deliveries(client, webhook["id"]) if item["attempts"] >= 2])
    assert failed[0]["status"] == "pending" and failed[0]["last_status_code"] is None
    assert "Connect" in failed[0]["last_error"] and failed[0]["next_attempt_at"] is not None
    with receiving(receiver):
        wait_for(lambda: deliveries(client, webhook["id"])[0]["status"] == "delivered")
    got = receiver.got()
    assert len(got) == 1 and got[0]["signed"]
    assert json.loads(got[0]["body"])["event_type"] == "query.completed"
    data(client.delete(f"/api/v1/webhooks/{webhook['id']}"))


def test_deleting_a_webhook_stops_its_deliveries(api: Api, client: httpx.Client) -> None:
    register_sales(api, rows=100)
    with (
        receiving(Receiver(free_port(), statuses=[503] * 10_000)) as failing,
        receiving(Receiver(free_port())) as control,
    ):
        doomed = subscribe(client, failing.url, "query.completed")
        witness = subscribe(client, control.url, "query.completed")
        query(client)
        wait_for(lambda: len(failing.got()) >= 2 and control.got())
        deleted = data(client.delete(f"/api/v1/webhooks/{doomed['id']}"))
        assert deleted["id"] == doomed["id"]
        seen = len(failing.got())
        assert client.get(f"/api/v1/webhooks/{doomed['id']}").status_code == 404
        query(client)
        wait_for(lambda: len(control.got()) >= 2)
        after = failing.got()
    assert len(after) <= seen + 1  # at most the attempt that was under way when it was deleted
    assert len({request["body"] for request in after}) == 1  # the second event never went to it
    data(client.delete(f"/api/v1/webhooks/{witness['id']}"))


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A catalog of its own (a fresh PostgreSQL database per test: the dispatcher claims every due delivery)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'catalog.db'}"
        else:
            url = stack.enter_context(temporary_database("ods_test_webhooks_"))
        opened = Catalog.open(url)
        stack.callback(opened.close)
        yield opened


def test_the_dispatcher_backs_off_and_expires_on_its_clock(catalog: Catalog) -> None:
    """Retries wait base, 2×base, … (on an injected clock: no sleeping), and a delivery is given up
    once its next try would fall after the expiry; a delivered one is never sent again."""
    now = [datetime.now(UTC)]
    settings = WebhookSettings(retry_base_s=10, retry_max_s=40, expire_s=100)
    with receiving(Receiver(free_port(), statuses=[500, 500])) as receiver, httpx.Client(timeout=5) as http:
        dispatcher = WebhookDispatcher(lambda: catalog, settings, client=http, clock=lambda: now[0])
        webhook = catalog.add_webhook(receiver.url, events=["query.completed"], secret=SECRET)
        assert catalog.add_outbox_event("dataset.created", {"dataset": "x"}) is None  # nobody listens
        event = catalog.add_outbox_event("query.completed", {"sql": "SELECT 1"}, event_key="q-1")
        assert event is not None
        assert catalog.add_outbox_event("query.completed", {"sql": "SELECT 1"}, event_key="q-1") == event

        def step(seconds: float) -> int:
            now[0] += timedelta(seconds=seconds)
            return dispatcher.run_once()

        assert step(0) == 1  # first attempt: 500
        assert step(9.9) == 0  # the retry waits retry_base_s
        assert step(0.1) == 1  # second attempt: 500
        assert step(19.9) == 0  # then twice as long
        assert step(0.1) == 1  # third attempt: 200
        assert step(3600) == 0  # delivered: never again
        assert [request["status"] for request in receiver.got()] == [500, 500, 200]

        receiver.statuses.extend([500] * 100)
        now[0] = datetime.now(UTC)  # the expiry counts from the event's own time
        catalog.add_outbox_event("query.completed", {"sql": "SELECT 2"})
        attempts = sum(step(15) for _ in range(8))
    (latest, _) = catalog.webhook_deliveries(webhook.id)
    assert latest.status == "expired" and latest.next_attempt_at is None
    assert latest.attempts == attempts and latest.last_status_code == 500 and latest.last_error == "HTTP 500"
    assert attempts == 4  # at +15, +30 (10 s on), +60 (20 s on), +105 (40 s on); +145 would pass the expiry


def test_a_deployment_writes_model_deployed_or_model_failed_once(catalog: Catalog, tmp_path: Path) -> None:
    """The serve stage's outcomes reach the outbox, keyed by endpoint: a retried task writes one event.
    (No server process is involved: the launches have no pid and no other endpoint is active.)"""
    from ods.adapters.models.server import LocalModelServer, ServerSpec
    from ods.stages.serve import Launch, ServerCheck, activate_endpoint, fail_deployment

    webhook = catalog.add_webhook(
        "http://127.0.0.1:9/hook", events=["model.deployed", "model.failed"], secret=SECRET
    )
    version = catalog.add_model_version(
        "tiny", trainer="tabular", params={}, metrics={}, artifact_uri="mem://m"
    )

    def launch() -> Launch:
        endpoint = catalog.add_served_endpoint(
            version.id, backend="transformers", url="http://127.0.0.1:9/v1"
        )
        spec = ServerSpec(
            backend="transformers", model_dir=tmp_path, served_name="tiny", host="127.0.0.1", port=9
        )
        return Launch(
            endpoint_id=endpoint.id, base_url=endpoint.url, spec=spec, log_path=str(tmp_path / "log")
        )

    failed, deployed = launch(), launch()
    for _ in range(2):  # the task's retry
        fail_deployment(
            catalog, LocalModelServer(), failed, ServerCheck(ok=False, problem="no /health in 5 s")
        )
        activate_endpoint(catalog, LocalModelServer(), deployed, ServerCheck(ok=True, served_model="tiny"))
    catalog.fan_out_events(datetime.now(UTC))
    log = catalog.webhook_deliveries(webhook.id)
    assert [item.event_type for item in log] == ["model.deployed", "model.failed"]
    due = catalog.claim_due_deliveries(datetime.now(UTC), lease_until=datetime.now(UTC))
    data_of = {
        item.delivery.event_type: item.event_data for item in due if item.delivery.webhook_id == webhook.id
    }
    assert data_of["model.failed"]["endpoint_id"] == failed.endpoint_id
    assert (
        data_of["model.failed"]["status"] == "failed"
        and data_of["model.failed"]["problem"] == "no /health in 5 s"
    )
    assert data_of["model.deployed"]["endpoint_id"] == deployed.endpoint_id
    assert data_of["model.deployed"]["status"] == "active" and data_of["model.deployed"]["replaced"] == []
