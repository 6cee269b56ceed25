"""Deployments with event triggers on the Prefect test server, and the runs those triggers created.

The trigger service picks up a new automation a moment after the deployment is applied, so
:func:`apply_triggered_deployment` emits a probe event and returns once the probe's run exists: from then
on every matching event is evaluated.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events import emit_event
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.events.worker import EventsWorker

WAIT_S = 60.0


def triggered_parameter(deployment_id: uuid.UUID, parameter: str, until: str | tuple[str, ...]) -> list[Any]:
    """``parameter`` of every run the deployment's trigger created, once runs with every value of ``until``
    exist (or after a bounded wait, so a missing run fails the caller's assertion instead of hanging).

    Wait for every run the caller expects, not only the last event's: the trigger service does not
    promise to create runs in the order their events were emitted."""
    expected = {until} if isinstance(until, str) else set(until)
    EventsWorker.drain_all()
    deadline = time.monotonic() + WAIT_S
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            values = [run.parameters.get(parameter) for run in runs]
            if expected <= set(values) or time.monotonic() > deadline:
                return values
            time.sleep(0.2)


def apply_triggered_deployment(
    flow: Flow[..., Any],
    name: str,
    trigger: DeploymentEventTrigger,
    probe: dict[str, Any],
    parameter: str,
    probe_value: str,
) -> uuid.UUID:
    """Apply ``flow`` as a deployment with ``trigger``; return once the ``probe`` event has started a run."""
    deployment_id = flow.to_deployment(name=name, triggers=[trigger]).apply()
    deadline = time.monotonic() + WAIT_S
    while probe_value not in _triggered_so_far(deployment_id, parameter):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"trigger of {name} did not start a run for its probe event within {WAIT_S:g} s"
            )
        emit_event(**probe, id=uuid.uuid4())
        EventsWorker.drain_all()
        time.sleep(0.5)
    return deployment_id


def _triggered_so_far(deployment_id: uuid.UUID, parameter: str) -> list[Any]:
    """``parameter`` of the runs the deployment's trigger created so far."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    return [run.parameters.get(parameter) for run in runs]
