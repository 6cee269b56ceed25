"""`ods serve` beside a real Prefect server (``PREFECT_API_URL``): a dataset registered through the API emits
the ods.dataset.registered event a prepare-dataset flow run emits (same resource, labels, payload shape
and deterministic id), and once prefect.yaml's prepare-dataset deployment exists, a registration starts
it and the run's state is the flow run's, read from Prefect. No worker polls the pool: the flow run stays
Scheduled, then is cancelled through the API so the run shows how a Prefect failure reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from ods.adapters.catalog import Catalog
from ods.adapters.object_store import key_of
from ods.api.prefect_runs import DeploymentNotFoundError, PrefectDeployments
from ods.domain.events import DATASET_REGISTERED, dataset_resource
from ods.factories import build_object_store
from ods.settings import load_settings
from ods.stages.prepare import DatasetVersionSummary, PreparedVersion, load_spec
from tests.support.api_envelope import data
from tests.support.api_process import ServeProcess, serve_env
from tests.support.prefect_server import QUIET, PrefectServer, running_prefect_server, wait_for

ROOT = Path(__file__).resolve().parents[2]
ORDERS = b"id,status,amount\n1,paid,10.5\n2,pending,3\n3,paid,7.25\n"


def orders_spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"uri": "orders.csv"},
        "steps": [{"coerce": {"column": "amount", "type": "float"}}],
        "expectations": [{"not_null": {"column": "id"}}],
    }


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server with the ods-cpu pool (prepare-dataset's) and no deployment yet."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect")) as server:
        template = json.loads((ROOT / "deployments" / "job_templates" / "process-cpu.json").read_text())
        server.post("/work_pools/", {"name": "ods-cpu", "type": "process", "base_job_template": template})
        yield server


@pytest.fixture
def serve(prefect: PrefectServer, tmp_path: Path) -> Iterator[ServeProcess]:
    env = {**serve_env(tmp_path, ODS_API__RUNS="auto"), **QUIET, "PREFECT_API_URL": prefect.api}
    server = ServeProcess(env, tmp_path / "serve.log")
    server.start()
    yield server
    server.close()


def registered_events(prefect: PrefectServer, dataset: str) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [DATASET_REGISTERED]}}, "limit": 50}
    events: list[dict[str, Any]] = prefect.post("/events/filter", body)["events"]
    return [event for event in events if event["resource"]["prefect.resource.id"] == f"ods.dataset.{dataset}"]


def run_of(client: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = data(client.get(f"/api/v1/runs/{run_id}"))
    return run


def test_registrations_emit_the_flows_event_then_start_the_deployment(
    prefect: PrefectServer, serve: ServeProcess
) -> None:
    settings = load_settings(home=Path(serve.env["ODS_HOME"]))
    store = build_object_store(settings)
    store.put_bytes("raw/orders.csv", ORDERS)
    source = store.uri("raw/orders.csv")
    client = httpx.Client(base_url=serve.base_url, timeout=60)

    # No deployment yet: auto runs the prepare in the server, and the server emits the flow's event.
    body = {"spec": orders_spec("orders"), "source_uri": source}
    run_id = data(client.post("/api/v1/datasets", json=body), 202)["run"]["id"]
    while (run := run_of(client, run_id))["finished_at"] is None:
        time.sleep(0.1)
    assert (run["state"], run["prefect_flow_run_id"]) == ("completed", None), run
    [event] = wait_for(
        lambda: registered_events(prefect, "orders"), "ods.dataset.registered", log=prefect.log
    )
    with Catalog.open(settings.catalog_url) as catalog:
        record = catalog.get_dataset_version("orders", 1)
    assert event["id"] == str(PreparedVersion(record).event_id(DATASET_REGISTERED))
    assert event["resource"] == dataset_resource("orders", train=False)
    assert set(event["payload"]) == {*DatasetVersionSummary.model_fields, "train"}
    assert event["payload"] == {**run["result"], "train": None}

    # prefect.yaml's prepare-dataset deployed: the next registration starts it.
    deploy = prefect.run(
        ["-m", "prefect", "--no-prompt", "deploy", "--name", "prepare-dataset"],
        cwd=ROOT,
        env={"ODS_PROJECT_DIR": str(ROOT)},
    )
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    body = {"spec": orders_spec("orders_again"), "source_uri": source}
    started = data(client.post("/api/v1/datasets", json=body), 202)["run"]
    flow_run_id = started["prefect_flow_run_id"]
    assert flow_run_id is not None and started["state"] == "queued", started
    run = run_of(client, started["id"])
    assert (run["state"], run["prefect_state"], run["result"]) == ("queued", "Scheduled", None), run

    flow_run = prefect.get(f"/flow_runs/{flow_run_id}")
    assert flow_run["deployment_id"] == prefect.deployments()["prepare-dataset"]["id"]
    assert flow_run["parameters"]["source"] == source
    spec_uri = flow_run["parameters"]["spec"]
    assert b"orders_again" in store.get_bytes(key_of(store, spec_uri))
    assert load_spec(spec_uri, settings).spec.name == "orders_again"  # as the flow's first task reads it

    # A flow run that ends badly in Prefect ends the run, with Prefect's message.
    prefect.post(
        f"/flow_runs/{flow_run_id}/set_state",
        {"state": {"type": "CANCELLED", "message": "cancelled by the test"}, "force": True},
    )
    run = run_of(client, started["id"])
    assert (run["state"], run["prefect_state"], run["error"]) == (
        "failed",
        "Cancelled",
        "cancelled by the test",
    )
    assert run["finished_at"] is not None
    client.close()


def test_a_missing_deployment_is_named_with_the_command_that_makes_it(prefect: PrefectServer) -> None:
    deployments = PrefectDeployments()
    with temporary_settings(updates={PREFECT_API_URL: prefect.api}):
        assert deployments.configured() and not deployments.exists("undeploy-model/undeploy-model")
        with pytest.raises(DeploymentNotFoundError) as refused:
            deployments.start(
                "undeploy-model/undeploy-model",
                {"model": "tiny"},
                run_id="0" * 32,
                flow_run_name="undeploy-tiny",
            )
    assert str(refused.value).startswith(
        "no deployment 'undeploy-model/undeploy-model' on the Prefect server: deploy prefect.yaml to it "
        "(`prefect --no-prompt deploy --all` from the project root"
    )
