"""gate_model: a version within its model's gate is approved once (one triggered deploy on the gate's backend),
others are not."""

from __future__ import annotations

import json
import uuid

import pytest
from prefect import flow
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from flows.gate_model import gate_model
from ods.factories import open_catalog
from ods.settings import get_settings
from tests.support.prefect_triggers import apply_triggered_deployment, triggered_parameter


@flow(name="deploy-sink")
def deploy_sink(model: str) -> None:
    """Stands in for deploy-model: only its triggered runs are counted."""


def test_gate_approves_passing_versions_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ODS_WATCH__DEPLOY_GATES",
        json.dumps({"support_llm": {"max": {"eval_loss": 2.5}, "backend": "transformers"}}),
    )
    get_settings.cache_clear()
    trigger = DeploymentEventTrigger(
        expect={"ods.model.approved"},
        match={"prefect.resource.id": "ods.model.*", "ods.model.backend": "transformers"},
        parameters={"model": "{{ event.payload.model_ref }}"},
    )
    probe = {
        "event": "ods.model.approved",
        "resource": {"prefect.resource.id": "ods.model.probe", "ods.model.backend": "transformers"},
        "payload": {"model_ref": "probe@0"},
    }
    deployment_id = apply_triggered_deployment(deploy_sink, "deploy-sink", trigger, probe, "model", "probe@0")
    run = uuid.uuid4().hex
    with open_catalog(get_settings()) as catalog:
        for loss in (1.9, 3.1, 2.0):
            catalog.add_model_version(
                "support_llm",
                trainer="causal-lm-sft",
                params={},
                metrics={"eval_loss": loss},
                artifact_uri=f"mem://{run}/{loss}",  # unique: the test server outlives this test
            )
        catalog.add_model_version(
            "tabular_model", trainer="tabular", params={}, metrics={"accuracy": 0.9}, artifact_uri="mem://t"
        )

    first = gate_model("support_llm@1")
    again = gate_model("support_llm@1")
    too_lossy = gate_model("support_llm@2")
    ungated = gate_model("tabular_model@1")
    sentinel = gate_model("support_llm@3")

    assert (first.approved, again.approved, sentinel.approved) == (True, True, True)
    assert not too_lossy.approved and "eval_loss = 3.1 is above the maximum 2.5" in too_lossy.reasons[0]
    assert not ungated.approved and "no deploy gate" in ungated.reasons[0]
    models = triggered_parameter(deployment_id, "model", until=("support_llm@1", "support_llm@3"))
    assert sorted(model for model in models if model != "probe@0") == ["support_llm@1", "support_llm@3"]
