"""A deploy `ods serve` runs itself emits the Prefect events the deploy-model flow's tasks emit:
``ods.model.failed`` for a server that does not answer in time, ``ods.model.deployed`` for one that does,
on ``ods.model.<name>`` with the version related and the tasks' payloads. The tiny causal LM served by a
real `transformers serve`; the emitter is a list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ods.adapters.models.server import LocalModelServer
from ods.api.resources import Resources
from ods.api.routes.models import deploy_in_server
from ods.api.run_events import RunEvent
from ods.domain.events import MODEL_DEPLOYED, MODEL_FAILED, model_resource, model_version_related
from ods.factories import build_object_store
from ods.settings import load_settings
from ods.stages.serve import DeploymentFailedError, GpuSettings, plan_deployment
from ods.stages.train import MANIFEST, upload_folder
from tests.support.tiny_llm import tiny_model_dir


@pytest.fixture
def resources(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Resources]:
    """A platform with the tiny causal LM registered as model ``tiny`` v1."""
    settings = load_settings(home=tmp_path / "ods-home")
    store = build_object_store(settings)
    store.ensure_ready()
    files = upload_folder(store, tiny_model_dir(tmp_path_factory), "models/tiny/k1")
    manifest = {"model": "tiny", "trainer": "causal-lm-sft", "format": "hf-causal-lm", "files": files}
    store.put_bytes(f"models/tiny/k1/{MANIFEST}", json.dumps(manifest).encode())
    opened = Resources(settings)
    opened.catalog.add_model_version(
        "tiny", trainer="causal-lm-sft", params={}, metrics={}, artifact_uri=store.uri("models/tiny/k1") + "/"
    )
    try:
        yield opened
    finally:
        for endpoint in opened.catalog.list_endpoints():
            if endpoint.pid is not None:
                LocalModelServer().stop(endpoint.pid, grace_s=5)
        opened.close()


def test_a_deploy_in_the_server_emits_model_failed_then_model_deployed(resources: Resources) -> None:
    plan = plan_deployment(
        resources.catalog,
        build_object_store(resources.settings),
        model="tiny@1",
        backend="transformers",
        host="127.0.0.1",
        port=None,
        gpu=GpuSettings(),
    )
    events: list[RunEvent] = []
    with pytest.raises(DeploymentFailedError):
        deploy_in_server(resources, events.append, plan, ready_timeout_s=0.01, tenant="default")
    deployed = deploy_in_server(resources, events.append, plan, ready_timeout_s=180, tenant="default")

    failed, active = events
    for event in events:
        assert event.resource == model_resource("tiny")
        assert event.related == (model_version_related(plan.version_id, "tiny@1"),)
    assert failed.event == MODEL_FAILED and failed.payload["status"] == "failed"
    assert failed.payload["problem"] and failed.payload["active_endpoint_id"] is None
    assert {"endpoint_id", "url", "log_tail"} <= set(failed.payload)
    assert active.event == MODEL_DEPLOYED and active.payload == deployed.model_dump(mode="json")
    assert active.payload["status"] == "active"
