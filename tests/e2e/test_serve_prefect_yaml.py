"""prefect.yaml on a real `prefect server start`: `python -m deployments.serve` registers every deployment
with its schedules and trigger automations and stops cleanly on Ctrl-C; beside the deployments that
`prefect deploy` registered for workers it refuses to replace them and serves under a prefix instead,
pausing only its own on Ctrl-C; `prefect deploy` without ODS_PROJECT_DIR fails before registering anything.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prefect_server import PrefectServer, running_prefect_server, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
POOLS = {"ods-cpu": "process-cpu.json", "ods-gpu": "process-gpu.json"}


def _specs() -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real Prefect server (SQLite) with no deployment on it."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect-serve")) as server:
        yield server


@pytest.fixture(scope="module")
def worker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A second real server with the work pools created, as a worker host has them."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect-deploy")) as server:
        for name, template in POOLS.items():
            base_job_template = json.loads((ROOT / "deployments" / "job_templates" / template).read_text())
            server.post(
                "/work_pools/", {"name": name, "type": "process", "base_job_template": base_job_template}
            )
        yield server


def _serve_until_registered(
    server: PrefectServer, log: Path, names: set[str], automations: int, *args: str
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Start serve, wait until ``names`` and ``automations`` are on the server, then Ctrl-C it."""
    serve = server.start(["-m", "deployments.serve", *args], cwd=ROOT, log=log)
    try:

        def all_registered() -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]] | None:
            # A deployment's triggers are created after it: wait for both, so the stop below comes
            # after registration, as a user's Ctrl-C on a running server does.
            found = server.deployments()
            triggers = server.post("/automations/filter")
            complete = names <= set(found) and len(triggers) == automations
            return (found, triggers) if complete else None

        registered = wait_for(all_registered, "all deployments and their triggers", process=serve, log=log)
    finally:
        stop_process(serve, signal.SIGINT)
    assert serve.returncode == 0, log.read_text()[-3000:]
    return registered


def test_serve_registers_every_deployment_with_schedules_and_triggers(
    prefect_api: PrefectServer, tmp_path: Path
) -> None:
    specs = _specs()
    expected_triggers = sum(len(spec.get("triggers") or []) for spec in specs)

    deployments, automations = _serve_until_registered(
        prefect_api, tmp_path / "serve.log", {spec["name"] for spec in specs}, expected_triggers
    )

    assert set(deployments) == {spec["name"] for spec in specs}
    for spec in specs:
        deployment = deployments[spec["name"]]
        assert deployment["entrypoint"] == spec["entrypoint"]
        assert deployment["parameters"] == (spec.get("parameters") or {})
        assert len(deployment["schedules"]) == len(spec.get("schedules") or [])
    assert len(automations) == expected_triggers
    served_ids = {d["id"] for d in deployments.values()}
    for automation in automations:
        assert automation["actions"][0]["deployment_id"] in served_ids
    assert all(deployment["paused"] for deployment in prefect_api.deployments().values())  # by Ctrl-C


def test_prefect_deploy_without_ods_project_dir_fails_before_registering_anything(
    worker_server: PrefectServer,
) -> None:
    before = worker_server.deployments()

    deploy = worker_server.run(["-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=ROOT)

    output = deploy.stdout + deploy.stderr
    assert deploy.returncode != 0, output[-3000:]
    assert "ODS_PROJECT_DIR must be the absolute path of this checkout on the workers" in output
    assert "got ''" in output
    assert worker_server.deployments() == before  # nothing registered with a literal `{{ $ODS_PROJECT_DIR }}`


def test_serve_refuses_to_replace_worker_deployments_and_serves_beside_them_with_a_prefix(
    worker_server: PrefectServer, tmp_path: Path
) -> None:
    specs = _specs()
    deploy = worker_server.run(
        ["-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=ROOT, env={"ODS_PROJECT_DIR": str(ROOT)}
    )
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    deployed = worker_server.deployments()
    assert all(
        d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        for d in deployed.values()
    )
    automations = len(worker_server.post("/automations/filter"))

    refused = worker_server.run(["-m", "deployments.serve"], cwd=ROOT, timeout_s=120)

    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert f"error: {len(specs)} deployment(s) of the same name(s) are already on this Prefect server" in line
    assert "check-health/check-health (work pool ods-cpu)" in line
    assert "deploy-model/deploy-model (work pool ods-gpu)" in line
    assert "--prefix dev" in line
    assert worker_server.deployments() == deployed  # untouched

    served = {f"dev-{spec['name']}" for spec in specs}
    _serve_until_registered(
        worker_server,
        tmp_path / "serve.log",
        served,
        automations + sum(len(spec.get("triggers") or []) for spec in specs),
        "--prefix",
        "dev",
    )

    after = worker_server.deployments()
    assert set(after) == set(deployed) | served
    for name, deployment in deployed.items():  # the worker deployments as `prefect deploy` left them
        assert after[name]["paused"] is False, name
        assert after[name]["work_pool_name"] == deployment["work_pool_name"]
        assert after[name]["pull_steps"] == deployment["pull_steps"]
        assert after[name]["updated"] == deployment["updated"]
    assert {name: (after[name]["paused"], after[name]["work_pool_name"]) for name in served} == {
        name: (True, None) for name in served
    }, (tmp_path / "serve.log").read_text()[-3000:]
