"""Event names and resource labels are spelled once (ods.domain.events); prefect.yaml matches only those."""

from __future__ import annotations

from typing import Any

from ods.domain import events
from tests.support.prefect_yaml_triggers import repo_deployments


def _triggers() -> list[dict[str, Any]]:
    return [trigger for spec in repo_deployments().values() for trigger in spec.get("triggers", [])]


def test_every_trigger_expects_an_event_ods_emits() -> None:
    expected = {name for trigger in _triggers() for name in trigger["expect"]}

    assert expected, "prefect.yaml declares no event trigger"
    assert expected <= set(events.EVENT_NAMES), expected - set(events.EVENT_NAMES)


def test_every_trigger_matches_labels_ods_sets() -> None:
    matched = {label for trigger in _triggers() for label in trigger.get("match", {})}

    assert matched - {"prefect.resource.id"} <= set(events.LABELS)


def test_resources_carry_the_labels_triggers_match() -> None:
    assert events.object_resource("lake", "docs/kb/a.md", kind="document", kb="kb") == {
        "prefect.resource.id": "ods.object.lake/docs/kb/a.md",
        "prefect.resource.name": "docs/kb/a.md",
        "ods.object.kind": "document",
        "ods.object.bucket": "lake",
        "ods.kb": "kb",
    }
    assert events.dataset_resource("sales", train=False)["ods.dataset.train"] == "false"
    assert events.model_resource("bot", backend="vllm")["ods.model.backend"] == "vllm"
    assert "ods.model.backend" not in events.model_resource("bot")
    assert events.object_event_name("deleted") == "ods.object.deleted"
    assert events.dataset_event_name(registered=False) == "ods.dataset.rejected"
