"""Every deployment in prefect.yaml points at a loadable flow and passes valid parameters (no server)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[2]


def _deployments() -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda deployment: deployment["name"])
def test_deployment_entrypoint_and_parameters_resolve(
    deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    schema = parameter_schema(flow)
    given = deployment.get("parameters") or {}

    assert set(given) <= set(schema.properties), f"unknown parameters {set(given) - set(schema.properties)}"
    required = set(schema.required or [])
    example = {name: "example" for name in required - set(given)}
    flow.validate_parameters({**given, **example})
    assert flow.description, f"{deployment['entrypoint']} has no docstring for the UI"
    assert all(prop.get("description") for prop in schema.properties.values()), (
        "every parameter needs a description"
    )


def test_prefect_yaml_holds_no_secret_looking_values() -> None:
    text = (ROOT / "prefect.yaml").read_text().lower()

    for marker in ("secret_key:", "password", "api_key:", "access_key:", "token:"):
        assert marker not in text


def test_model_servers_bind_what_the_worker_configures_not_every_interface() -> None:
    """deploy-model and deploy-model-cpu name no host: a server binds the worker's ODS_SERVING__HOST,
    127.0.0.1 unless that worker sets another address."""
    deployments = {deployment["name"]: deployment for deployment in _deployments()}

    for name in ("deploy-model", "deploy-model-cpu"):
        assert "host" not in (deployments[name].get("parameters") or {}), name


@pytest.mark.parametrize(
    "deployment",
    [deployment for deployment in _deployments() if deployment.get("schedules")],
    ids=lambda deployment: deployment["name"],
)
def test_scheduled_deployments_keep_their_times_and_skip_redeploy_leftovers(
    deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redeploy can leave a run of the replaced schedule beside the new one's for the same time: the
    flow checks first (tasks/schedules.py), and an interval's anchor keeps the times the same across
    redeploys (`prefect deploy` would anchor it at its own second)."""
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])

    assert "skip_redeploy_leftover()" in inspect.getsource(flow.fn)
    for schedule in deployment["schedules"]:
        assert "cron" in schedule or "anchor_date" in schedule, schedule
