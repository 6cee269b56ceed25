"""The event triggers in prefect.yaml match the events the platform emits and render valid flow parameters.

Events are built by the same code that emits them (the watcher's ObjectChange, the dataset/model payload
shapes); matching and rendering use Prefect's own trigger schema, resource matching and the server's
template hydration, so a trigger that would never fire or would start a run with bad parameters fails here.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.events.schemas.events import Resource
from prefect.flows import load_flow_from_entrypoint
from prefect.server.events.actions import RunDeployment
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

from ods.domain.bucket_diff import ObjectChange, WatchLayout, classify_key
from ods.domain.deploy_gate import approval_resource

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = WatchLayout()


def _deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {deployment["name"]: deployment for deployment in document["deployments"]}


def _object_event(action: str, key: str) -> ReceivedEvent:
    role = classify_key(key, LAYOUT)
    assert role is not None
    change = ObjectChange(action, "lake", key, "etag-1", 10, role)  # type: ignore[arg-type]
    return _event(change.event, change.resource(), change.payload(lambda k: f"s3://lake/{k}"))


def _event(name: str, resource: dict[str, str], payload: dict[str, Any]) -> ReceivedEvent:
    return ReceivedEvent(
        id=uuid.uuid4(), event=name, resource=resource, payload=payload, occurred=datetime.now(UTC)
    )


def _dataset_registered(train: dict[str, Any] | None) -> ReceivedEvent:
    resource = {
        "prefect.resource.id": "ods.dataset.bl_books",
        "prefect.resource.name": "bl_books",
        "ods.dataset.train": "true" if train else "false",
    }
    return _event("ods.dataset.registered", resource, {"dataset": "bl_books", "version": 3, "train": train})


def _model_event(name: str, payload: dict[str, Any]) -> ReceivedEvent:
    return _event(name, {"prefect.resource.id": "ods.model.support_llm"}, payload)


def _fires(deployment: str, event: ReceivedEvent) -> list[DeploymentEventTrigger]:
    """The triggers of ``deployment`` that ``event`` fires (expect + match, as the server evaluates them)."""
    triggers = [
        DeploymentEventTrigger.model_validate(t) for t in _deployments()[deployment].get("triggers", [])
    ]
    return [
        trigger
        for trigger in triggers
        if trigger.enabled
        and event.event in trigger.expect
        and trigger.match.includes([Resource.model_validate(event.resource.root)])
    ]


def _render(trigger: DeploymentEventTrigger, event: ReceivedEvent) -> dict[str, Any]:
    parameters = copy.deepcopy(trigger.parameters or {})
    RunDeployment._upgrade_v1_templates(parameters)
    return hydrate(
        parameters, HydrationContext(render_jinja=True, jinja_context={"event": event}, raise_on_error=True)
    )


def _validated(
    deployment: str, parameters: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.chdir(ROOT)
    spec = _deployments()[deployment]
    flow = load_flow_from_entrypoint(spec["entrypoint"])
    return flow.validate_parameters({**(spec.get("parameters") or {}), **parameters})


def test_every_trigger_is_a_valid_prefect_event_trigger() -> None:
    for name, deployment in _deployments().items():
        for trigger in deployment.get("triggers", []):
            parsed = DeploymentEventTrigger.model_validate(trigger)
            assert parsed.expect, f"{name}: a trigger must name the events it expects"
            assert all(event.startswith("ods.") for event in parsed.expect), name


def test_spec_created_prepares_the_dataset_from_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _object_event("created", "raw/bl_books.yaml")

    (trigger,) = _fires("prepare-dataset", event)
    parameters = _validated("prepare-dataset", _render(trigger, event), monkeypatch)

    assert parameters == {"spec": "s3://lake/raw/bl_books.yaml", "source": None}
    assert not _fires("ingest-documents", event)


def test_raw_table_created_prepares_it_with_its_sibling_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _object_event("created", "raw/bl_books.csv")

    (trigger,) = _fires("prepare-dataset", event)
    parameters = _validated("prepare-dataset", _render(trigger, event), monkeypatch)

    assert parameters == {"spec": "s3://lake/raw/bl_books.yaml", "source": "s3://lake/raw/bl_books.csv"}


def test_raw_object_deleted_starts_nothing() -> None:
    event = _object_event("deleted", "raw/bl_books.csv")

    assert not _fires("prepare-dataset", event)
    assert not _fires("ingest-documents", event)


@pytest.mark.parametrize("action", ["created", "deleted"])
def test_document_change_syncs_its_knowledge_base(action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    event = _object_event(action, "docs/handbook/policies/leave.pdf")

    (trigger,) = _fires("ingest-documents", event)
    parameters = _validated("ingest-documents", _render(trigger, event), monkeypatch)

    assert parameters == {"source": "s3://lake/docs/handbook/", "kb": "handbook", "batch_size": 64}
    assert not _fires("prepare-dataset", event)


def test_registered_dataset_with_train_block_trains_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _dataset_registered({"trainer": "tabular", "target": "year", "params": {"max_iter": 50}})

    (trigger,) = _fires("train-model", event)
    parameters = _validated("train-model", _render(trigger, event), monkeypatch)

    assert parameters["dataset"] == "bl_books@3"
    assert parameters["trainer"] == "tabular"
    assert parameters["target"] == "year"
    assert parameters["params"] == {"max_iter": 50}
    assert parameters["base_model"] is None and parameters["model_name"] is None


def test_train_block_defaults_render_when_keys_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _dataset_registered({"target": "year"})

    (trigger,) = _fires("train-model", event)
    parameters = _validated("train-model", _render(trigger, event), monkeypatch)

    assert parameters["trainer"] == "tabular"


def test_registered_dataset_without_train_block_trains_nothing() -> None:
    assert not _fires("train-model", _dataset_registered(None))


def test_registered_model_is_gated_and_an_approved_one_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = _model_event("ods.model.registered", {"model": "support_llm", "version": 2, "metrics": {}})
    (gate,) = _fires("gate-model", registered)
    assert _validated("gate-model", _render(gate, registered), monkeypatch) == {"model": "support_llm@2"}
    assert not _fires("deploy-model", registered)


@pytest.mark.parametrize(
    ("backend", "deployment", "other"),
    [("vllm", "deploy-model", "deploy-model-cpu"), ("transformers", "deploy-model-cpu", "deploy-model")],
)
def test_an_approved_version_is_deployed_on_its_gates_backend_only(
    backend: str, deployment: str, other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    approved = _event(
        "ods.model.approved",
        approval_resource("support_llm", backend),
        {"model": "support_llm", "version": 2, "model_ref": "support_llm@2", "backend": backend},
    )
    (deploy,) = _fires(deployment, approved)
    parameters = _validated(deployment, _render(deploy, approved), monkeypatch)
    assert (parameters["model"], parameters["backend"]) == ("support_llm@2", backend)
    assert not _fires(other, approved)


def test_watcher_and_nightly_sync_are_scheduled() -> None:
    deployments = _deployments()

    assert deployments["watch-bucket"]["schedules"][0]["interval"] == 60
    assert deployments["sync-knowledge-bases"]["schedules"][0]["cron"] == "0 2 * * *"
