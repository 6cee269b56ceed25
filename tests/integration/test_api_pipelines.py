"""``GET /api/v1/pipelines`` without a Prefect server: prefect.yaml's deployments with their schedules,
triggers and the events their flows emit, each saying why no runs are shown; a missing prefect.yaml is a
503 naming the setting to fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ods.settings import load_settings
from tests.support.api_envelope import data, refused
from tests.support.api_server import RunningApi, running_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with running_api(load_settings(home=tmp_path_factory.mktemp("api-pipelines") / "ods-home")) as running:
        yield running


def test_the_deployments_of_prefect_yaml_with_their_triggers(api: RunningApi) -> None:
    with httpx.Client(base_url=api.base_url, timeout=60) as client:
        pipelines = data(client.get("/api/v1/pipelines"))

    assert pipelines["source"].endswith("prefect.yaml") and pipelines["prefect_configured"] is False
    deployments = {d["name"]: d for d in pipelines["deployments"]}
    prepare = deployments["prepare-dataset"]
    assert prepare["full_name"] == "prepare-dataset/prepare-dataset"
    assert prepare["triggers"][0]["expect"] == ["ods.object.created"]
    assert prepare["triggers"][0]["parameters"]["spec"] == "{{ event.payload.spec_uri }}"
    assert prepare["emits"] == ["ods.dataset.registered", "ods.dataset.rejected"]
    assert deployments["watch-bucket"]["schedules"][0]["interval_s"] == 60
    assert prepare["runs"] is None and "no Prefect server" in prepare["runs_note"]


def test_a_missing_prefect_yaml_names_the_setting(
    api: RunningApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODS_PROJECT_DIR", str(tmp_path))
    with httpx.Client(base_url=api.base_url, timeout=60) as client:
        body = refused(client.get("/api/v1/pipelines"), 503, 50301)

    assert "no prefect.yaml at" in body["message"] and "ODS_PROJECT_DIR" in body["message"]


def test_starting_a_run_or_pausing_needs_a_prefect_server(api: RunningApi) -> None:
    with httpx.Client(base_url=api.base_url, timeout=60) as client:
        body = refused(client.post("/api/v1/pipelines/check-health/runs", json={}), 503, 50301)
        unknown = refused(client.post("/api/v1/pipelines/nope/runs", json={}), 404, 40401)
        page = client.get("/console/pipelines").text

    assert "no Prefect server: set PREFECT_API_URL" in body["message"]
    assert "check-health" in unknown["message"]  # the known deployments are named
    assert "data-run-form" not in page and "No Prefect server: runs shown are the server's own." in page
