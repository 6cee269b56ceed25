"""The event triggers in prefect.yaml match the events the platform emits and render valid flow parameters.

Events are built by the same code that emits them (the watcher's ObjectChange, the resource builders of
ods.domain.events, the dataset/model payload shapes); matching and rendering use Prefect's own trigger schema, resource matching and the server's
template hydration, so a trigger that would never fire or would start a run with bad parameters fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.server.events.schemas.events import ReceivedEvent

from ods.domain.bucket_diff import ObjectChange, WatchLayout, classify_key
from ods.domain.deploy_gate import approval_resource
from ods.domain.events import (
    MODEL_APPROVED,
    MODEL_REGISTERED,
    dataset_event_name,
    dataset_resource,
    model_resource,
)
from tests.support.prefect_yaml_triggers import (
    ROOT,
    firing_triggers,
    received_event,
    rendered_parameters,
    repo_deployments,
)

LAYOUT = WatchLayout()


def _object_event(action: str, key: str) -> ReceivedEvent:
    role = classify_key(key, LAYOUT)
    assert role is not None
    change = ObjectChange(action, "lake", key, "etag-1", 10, role)  # type: ignore[arg-type]
    return received_event(change.event, change.resource(), change.payload(lambda k: f"s3://lake/{k}"))


def _dataset_registered(train: dict[str, Any] | None) -> ReceivedEvent:
    resource = dataset_resource("bl_books", train=bool(train))
    return received_event(
        dataset_event_name(registered=True), resource, {"dataset": "bl_books", "version": 3, "train": train}
    )


def _model_event(name: str, payload: dict[str, Any]) -> ReceivedEvent:
    return received_event(name, model_resource("support_llm"), payload)


def _validated(
    deployment: str, parameters: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.chdir(ROOT)
    spec = repo_deployments()[deployment]
    flow = load_flow_from_entrypoint(spec["entrypoint"])
    return flow.validate_parameters({**(spec.get("parameters") or {}), **parameters})


def test_every_trigger_is_a_valid_prefect_event_trigger() -> None:
    for name, deployment in repo_deployments().items():
        for trigger in deployment.get("triggers", []):
            parsed = DeploymentEventTrigger.model_validate(trigger)
            assert parsed.expect, f"{name}: a trigger must name the events it expects"
            assert all(event.startswith("ods.") for event in parsed.expect), name


def test_spec_created_prepares_the_dataset_from_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _object_event("created", "raw/bl_books.yaml")

    (trigger,) = firing_triggers("prepare-dataset", event)
    parameters = _validated("prepare-dataset", rendered_parameters(trigger, event), monkeypatch)

    assert parameters == {"spec": "s3://lake/raw/bl_books.yaml", "source": None}
    assert not firing_triggers("ingest-documents", event)


def test_raw_table_created_prepares_it_with_its_sibling_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _object_event("created", "raw/bl_books.csv")

    (trigger,) = firing_triggers("prepare-dataset", event)
    parameters = _validated("prepare-dataset", rendered_parameters(trigger, event), monkeypatch)

    assert parameters == {"spec": "s3://lake/raw/bl_books.yaml", "source": "s3://lake/raw/bl_books.csv"}


def test_raw_object_deleted_starts_nothing() -> None:
    event = _object_event("deleted", "raw/bl_books.csv")

    assert not firing_triggers("prepare-dataset", event)
    assert not firing_triggers("ingest-documents", event)


@pytest.mark.parametrize("action", ["created", "deleted"])
def test_document_change_syncs_its_knowledge_base(action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    event = _object_event(action, "docs/handbook/policies/leave.pdf")

    (trigger,) = firing_triggers("ingest-documents", event)
    parameters = _validated("ingest-documents", rendered_parameters(trigger, event), monkeypatch)

    assert parameters == {"source": "s3://lake/docs/handbook/", "kb": "handbook", "batch_size": 128}
    assert not firing_triggers("prepare-dataset", event)


def test_registered_dataset_with_train_block_trains_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _dataset_registered({"trainer": "tabular", "target": "year", "params": {"max_iter": 50}})

    (trigger,) = firing_triggers("train-model", event)
    parameters = _validated("train-model", rendered_parameters(trigger, event), monkeypatch)

    assert parameters["dataset"] == "bl_books@3"
    assert parameters["trainer"] == "tabular"
    assert parameters["target"] == "year"
    assert parameters["params"] == {"max_iter": 50}
    assert parameters["base_model"] is None and parameters["model_name"] is None


def test_train_block_defaults_render_when_keys_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _dataset_registered({"target": "year"})

    (trigger,) = firing_triggers("train-model", event)
    parameters = _validated("train-model", rendered_parameters(trigger, event), monkeypatch)

    assert parameters["trainer"] == "tabular"


def test_registered_dataset_without_train_block_trains_nothing() -> None:
    assert not firing_triggers("train-model", _dataset_registered(None))


def test_registered_model_is_gated_and_an_approved_one_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = _model_event(MODEL_REGISTERED, {"model": "support_llm", "version": 2, "metrics": {}})
    (gate,) = firing_triggers("gate-model", registered)
    assert _validated("gate-model", rendered_parameters(gate, registered), monkeypatch) == {
        "model": "support_llm@2"
    }
    assert not firing_triggers("deploy-model", registered)


@pytest.mark.parametrize(
    ("backend", "deployment", "other"),
    [("vllm", "deploy-model", "deploy-model-cpu"), ("transformers", "deploy-model-cpu", "deploy-model")],
)
def test_an_approved_version_is_deployed_on_its_gates_backend_only(
    backend: str, deployment: str, other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    approved = received_event(
        MODEL_APPROVED,
        approval_resource("support_llm", backend),
        {"model": "support_llm", "version": 2, "model_ref": "support_llm@2", "backend": backend},
    )
    (deploy,) = firing_triggers(deployment, approved)
    parameters = _validated(deployment, rendered_parameters(deploy, approved), monkeypatch)
    assert (parameters["model"], parameters["backend"]) == ("support_llm@2", backend)
    assert not firing_triggers(other, approved)


def test_watcher_and_nightly_sync_are_scheduled() -> None:
    deployments = repo_deployments()

    assert deployments["watch-bucket"]["schedules"][0]["interval"] == 60
    assert deployments["sync-knowledge-bases"]["schedules"][0]["cron"] == "0 2 * * *"
