"""The event triggers of the repo's prefect.yaml, evaluated as the Prefect server evaluates them.

Matching uses Prefect's own trigger schema and resource matching; rendering uses the server's template
hydration. Shared by the trigger unit tests and the flow tests that start the runs a trigger would start.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.events.schemas.events import Resource
from prefect.server.events.actions import RunDeployment
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

ROOT = Path(__file__).resolve().parents[2]


def repo_deployments() -> dict[str, dict[str, Any]]:
    """The deployments of prefect.yaml by name."""
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {deployment["name"]: deployment for deployment in document["deployments"]}


def received_event(name: str, resource: dict[str, str], payload: dict[str, Any]) -> ReceivedEvent:
    """An event as the server receives it."""
    return ReceivedEvent(
        id=uuid.uuid4(), event=name, resource=resource, payload=payload, occurred=datetime.now(UTC)
    )


def firing_triggers(deployment: str, event: ReceivedEvent) -> list[DeploymentEventTrigger]:
    """The triggers of ``deployment`` that ``event`` fires (expect + match, as the server evaluates them)."""
    triggers = [
        DeploymentEventTrigger.model_validate(trigger)
        for trigger in repo_deployments()[deployment].get("triggers", [])
    ]
    return [
        trigger
        for trigger in triggers
        if trigger.enabled
        and event.event in trigger.expect
        and trigger.match.includes([Resource.model_validate(event.resource.root)])
    ]


def rendered_parameters(trigger: DeploymentEventTrigger, event: ReceivedEvent) -> dict[str, Any]:
    """The run parameters ``trigger`` renders from ``event`` (its Jinja templates hydrated)."""
    parameters = copy.deepcopy(trigger.parameters or {})
    RunDeployment._upgrade_v1_templates(parameters)
    return hydrate(
        parameters, HydrationContext(render_jinja=True, jinja_context={"event": event}, raise_on_error=True)
    )
