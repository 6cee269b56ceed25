"""The pipelines routes of `ods serve` beside a real Prefect server (``PREFECT_API_URL``): a deployment of
prefect.yaml that is on the server shows its parameter schema, schedules, triggers and newest flow runs; a
run started through the API is a flow run of that deployment with the form's parameters; a schedule and a
trigger (the automation `prefect deploy` makes of it) pause and resume on the server. The console page carries the run form and the pause button. No worker: runs stay Scheduled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api_envelope import data, refused
from tests.support.api_process import ServeProcess, serve_env
from tests.support.prefect_server import QUIET, PrefectServer, running_prefect_server

SCHEMA = {
    "title": "Parameters",
    "type": "object",
    "properties": {
        "deep": {"title": "deep", "type": "boolean", "default": False, "position": 0},
        "components": {"title": "components", "anyOf": [{"type": "array"}, {"type": "null"}], "position": 1},
    },
}


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server holding check-health (prefect.yaml's flow and deployment names) with a schedule."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect")) as server:
        flow = server.post("/flows/", {"name": "check-health"})
        server.post(
            "/deployments/",
            {
                "name": "check-health",
                "flow_id": flow["id"],
                "parameters": {"deep": False},
                "parameter_openapi_schema": SCHEMA,
                "enforce_parameter_schema": True,
                "schedules": [{"schedule": {"cron": "*/15 * * * *", "timezone": "UTC"}, "active": True}],
            },
        )
        deployment = server.deployments()["check-health"]
        server.post(  # a trigger as `prefect deploy` makes one of prefect.yaml's: an automation it owns
            "/automations/",
            {
                "name": "check-health__automation_1",
                "enabled": True,
                "trigger": {
                    "type": "event",
                    "expect": ["ods.object.created"],
                    "posture": "Reactive",
                    "threshold": 1,
                    "within": 0,
                },
                "actions": [
                    {
                        "type": "run-deployment",
                        "source": "selected",
                        "deployment_id": deployment["id"],
                        "parameters": {},
                    }
                ],
                "owner_resource": f"prefect.deployment.{deployment['id']}",
            },
        )
        yield server


@pytest.fixture(scope="module")
def client(prefect: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("serve")
    server = ServeProcess({**serve_env(home), **QUIET, "PREFECT_API_URL": prefect.api}, home / "serve.log")
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as session:
            yield session
    finally:
        server.close()


def _deployment(client: httpx.Client, name: str) -> dict[str, Any]:
    pipelines = data(client.get("/api/v1/pipelines"))
    assert pipelines["prefect_configured"] is True and pipelines["prefect_error"] is None
    found: dict[str, Any] = next(d for d in pipelines["deployments"] if d["name"] == name)
    return found


def test_a_deployed_pipeline_shows_its_schema_schedules_and_runs(
    prefect: PrefectServer, client: httpx.Client
) -> None:
    health = _deployment(client, "check-health")
    assert health["parameter_schema"]["properties"]["deep"]["type"] == "boolean"
    [schedule] = health["prefect_schedules"]
    assert schedule["label"] == "cron */15 * * * *" and schedule["active"] is True
    assert _deployment(client, "prepare-dataset")["runs_note"] == "not deployed to the Prefect server"

    started = data(
        client.post("/api/v1/pipelines/check-health/runs", json={"parameters": {"deep": True}}), status=202
    )
    assert started["deployment"] == "check-health/check-health"
    flow_run = prefect.get(f"/flow_runs/{started['flow_run_id']}")
    assert flow_run["parameters"] == {"deep": True}
    runs = _deployment(client, "check-health")["runs"]
    assert started["flow_run_id"] in [run["id"] for run in runs]

    page = client.get("/console/pipelines").text
    assert 'data-run-form="/api/v1/pipelines/check-health/runs"' in page
    assert 'data-kind="boolean"' in page and 'name="components" data-kind="json"' in page
    assert f"/schedules/{schedule['id']}/pause" in page


def test_a_schedule_pauses_and_resumes_on_the_server(prefect: PrefectServer, client: httpx.Client) -> None:
    [schedule] = _deployment(client, "check-health")["prefect_schedules"]
    url = f"/api/v1/pipelines/check-health/schedules/{schedule['id']}"

    assert data(client.post(f"{url}/pause"))["active"] is False
    assert _deployment(client, "check-health")["prefect_schedules"][0]["active"] is False
    assert "Resume" in client.get("/console/pipelines").text
    assert data(client.post(f"{url}/resume"))["active"] is True
    assert _deployment(client, "check-health")["prefect_schedules"][0]["active"] is True


def test_a_trigger_pauses_and_resumes_on_the_server(prefect: PrefectServer, client: httpx.Client) -> None:
    [trigger] = _deployment(client, "check-health")["prefect_triggers"]
    assert trigger["label"] == "ods.object.created" and trigger["enabled"] is True
    assert trigger["name"] == "check-health__automation_1"
    url = f"/api/v1/pipelines/check-health/triggers/{trigger['id']}"

    assert data(client.post(f"{url}/pause"))["enabled"] is False
    assert data(client.post(f"{url}/pause"))["enabled"] is False  # again: no change
    assert prefect.get(f"/automations/{trigger['id']}")["enabled"] is False
    assert _deployment(client, "check-health")["prefect_triggers"][0]["enabled"] is False
    page = client.get("/console/pipelines").text
    assert "Resume trigger ods.object.created" in page and f"/triggers/{trigger['id']}/resume" in page
    assert data(client.post(f"{url}/resume"))["enabled"] is True
    assert prefect.get(f"/automations/{trigger['id']}")["enabled"] is True
    missing = "00000000-0000-0000-0000-000000000000"
    refused(client.post(f"/api/v1/pipelines/check-health/triggers/{missing}/pause"), 404, 40401)
    refused(client.post("/api/v1/pipelines/check-health/triggers/nope/resume"), 404, 40401)


def test_unknown_deployments_schedules_and_bad_parameters_are_refused(client: httpx.Client) -> None:
    unknown = refused(client.post("/api/v1/pipelines/nope/runs", json={}), 404, 40401)
    assert "prefect.yaml has no deployment 'nope'" in unknown["message"]
    refused(client.post("/api/v1/pipelines/check-health/schedules/not-a-uuid/pause"), 404, 40401)
    missing = "00000000-0000-0000-0000-000000000000"
    refused(client.post(f"/api/v1/pipelines/check-health/schedules/{missing}/pause"), 404, 40401)
    not_deployed = refused(client.post("/api/v1/pipelines/undeploy-model/runs", json={}), 503, 50301)
    assert "no deployment 'undeploy-model/undeploy-model'" in not_deployed["message"]
    bad = client.post("/api/v1/pipelines/check-health/runs", json={"parameters": {"deep": "very"}})
    refusal = refused(bad, 400, 40001)
    assert "the Prefect server refused a run of 'check-health/check-health'" in refusal["message"]
