"""The webhook bridge as a real HTTP server (uvicorn on a free loopback port) given MinIO's event JSON.

The emitter is injected (a list): what the bridge emitted is exactly what it handed it. The real Prefect
emit path, with duplicates starting one triggered run, is covered in tests/flows/test_watch_bucket.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from ods.api.events_bridge import WEBHOOK_PATH, BridgeConfig, create_bridge_app
from ods.domain.bucket_diff import WatchLayout, object_event_id
from ods.stages.watch import ObjectEvent
from tests.support.minio_events import minio_body, minio_record

TOKEN = "s3cr3t-webhook-token"


@dataclass
class RunningBridge:
    url: str
    emitted: list[ObjectEvent]
    token: str | None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module", params=[None, TOKEN], ids=["open", "token"])
def bridge(request: pytest.FixtureRequest) -> Iterator[RunningBridge]:
    emitted: list[ObjectEvent] = []
    app = create_bridge_app(BridgeConfig(WatchLayout(), token=request.param), emitted.append)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the bridge did not start on port {port}")
        thread.join(0.05)
    try:
        yield RunningBridge(f"http://127.0.0.1:{port}", emitted, request.param)
    finally:
        server.should_exit = True
        thread.join()


def _post(bridge: RunningBridge, body: bytes, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(bridge.url + WEBHOOK_PATH, content=body, headers=headers)


def test_minio_notification_becomes_object_events(bridge: RunningBridge) -> None:
    bridge.emitted.clear()
    body = minio_body(
        minio_record(
            "s3:ObjectCreated:Put", "raw/books.csv", etag="9b2cf535f27731c974343645a3985328", size=120
        ),
        minio_record("s3:ObjectCreated:Put", "docs/handbook/Leave%20Policy.pdf", etag="abc", size=2048),
        minio_record("s3:ObjectRemoved:Delete", "docs/handbook/old.md", etag=None, size=None),
    )

    response = _post(bridge, body)

    assert response.status_code == 200
    assert [(e.event, e.payload["key"]) for e in bridge.emitted] == [
        ("ods.object.created", "raw/books.csv"),
        ("ods.object.created", "docs/handbook/Leave Policy.pdf"),
        ("ods.object.deleted", "docs/handbook/old.md"),
    ]
    first = bridge.emitted[0]
    assert first.id == object_event_id("lake", "raw/books.csv", "9b2cf535f27731c974343645a3985328", "created")
    assert first.resource["prefect.resource.id"] == "ods.object.lake/raw/books.csv"
    assert first.payload["spec_uri"] == "s3://lake/raw/books.yaml"
    assert bridge.emitted[1].payload["source_uri"] == "s3://lake/docs/handbook/"
    assert response.json()["emitted"][0]["id"] == str(first.id)


def test_the_same_notification_twice_emits_the_same_ids(bridge: RunningBridge) -> None:
    bridge.emitted.clear()
    body = minio_body(minio_record("s3:ObjectCreated:Put", "raw/books.yaml", etag="e1", size=10))

    _post(bridge, body)
    _post(bridge, body)

    assert len(bridge.emitted) == 2 and bridge.emitted[0].id == bridge.emitted[1].id


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"EventName": "s3:ObjectCreated:Put", "Key": "lake/raw/a.csv"}',
        json.dumps([1]).encode(),
    ],
)
def test_malformed_body_is_refused_with_400_and_emits_nothing(bridge: RunningBridge, body: bytes) -> None:
    bridge.emitted.clear()

    response = _post(bridge, body)

    assert response.status_code == 400
    assert "error" in response.json()
    assert bridge.emitted == []


def test_wrong_or_missing_token_is_refused_when_one_is_configured(bridge: RunningBridge) -> None:
    bridge.emitted.clear()
    body = minio_body(minio_record("s3:ObjectCreated:Put", "raw/books.csv"))

    missing = _post(bridge, body, token=None)
    wrong = _post(bridge, body, token="guess")

    if bridge.token is not None:
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert TOKEN not in missing.text
        assert bridge.emitted == []
    else:
        assert (missing.status_code, wrong.status_code) == (200, 200)


def test_health_answers(bridge: RunningBridge) -> None:
    assert httpx.get(bridge.url + "/health").json() == {"status": "ok"}


def test_bridge_command_serves_with_the_token_from_settings(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ODS_HOME": str(tmp_path), "ODS_WATCH__BRIDGE_TOKEN": TOKEN}
    command = [
        sys.executable,
        "-c",
        "from ods.cli.events import events_app; events_app()",
        "bridge",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(url, process)
        body = minio_body(minio_record("s3:ObjectCreated:Put", "raw/books.csv"))

        unauthorized = httpx.post(url + WEBHOOK_PATH, content=body)
        malformed = httpx.post(url + WEBHOOK_PATH, content=b"{", headers={"Authorization": f"Bearer {TOKEN}"})

        assert (unauthorized.status_code, malformed.status_code) == (401, 400)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert "auth: on" in output
    assert TOKEN not in output


def _wait_for_health(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"`ods events bridge` exited with {process.returncode}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"`ods events bridge` did not answer at {url} within 60 s")


def test_the_notification_shown_in_docs_events_md_gives_the_event_shown_there(bridge: RunningBridge) -> None:
    bridge.emitted.clear()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    notification, event = (json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", docs, re.DOTALL))

    response = _post(bridge, json.dumps(notification).encode())

    assert response.status_code == 200
    (emitted,) = bridge.emitted
    shown = {"event": emitted.event, "id": str(emitted.id), "resource": emitted.resource}
    assert {**shown, "payload": emitted.payload} == event
    assert notification == json.loads(
        minio_body(
            minio_record(
                "s3:ObjectCreated:Put", "raw/sales.csv", "9b2cf535f27731c974343645a3985328", 18342, "ods"
            )
        )
    ), "docs/events.md shows MinIO's notification as tests/support/minio_events.py builds it"
