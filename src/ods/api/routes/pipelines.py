"""``/api/v1/pipelines``: the deployments of prefect.yaml with their schedules, event triggers and the events
their flows emit (what the console's pipelines page draws), and, when a Prefect server is configured
(``PREFECT_API_URL``), each deployment's newest flow runs read from it.

prefect.yaml is read from ``ODS_PROJECT_DIR`` (the checkout the workers run, docs/operations.md), else from
the checkout that holds this code.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, Field

import ods
from ods.api.envelope import Envelope, ok
from ods.api.prefect_runs import DeployedView, PrefectDeployments
from ods.domain.pipelines import Deployment, PipelinesFileError, parse_pipelines
from ods.errors import NotFoundError, SettingsError

router = APIRouter(prefix="/api/v1/pipelines", tags=["runs"])

RECENT_RUNS: Final = 3


class PipelineSchedule(BaseModel):
    label: str = Field(description="'cron */15 * * * * UTC' or 'every 1 min'.")
    cron: str | None
    interval_s: float | None
    timezone: str | None
    active: bool


class PipelineTrigger(BaseModel):
    expect: list[str] = Field(description="The events that start a run.")
    label: str = Field(description="The events, short: 'ods.object.created | deleted'.")
    condition: str = Field(description="The labels matched, e.g. 'kind: spec, raw'.")
    enabled: bool
    parameters: dict[str, Any] = Field(description="The run's parameters, templated from the event.")


class PipelineRun(BaseModel):
    id: str
    name: str
    state: str = Field(description="queued, running, completed, failed or interrupted.")
    prefect_state: str
    started_at: datetime | None


class PrefectSchedule(BaseModel):
    id: str = Field(description="The schedule's id on the Prefect server (pause and resume name it).")
    label: str
    active: bool = Field(description="false while paused.")


class PrefectTrigger(BaseModel):
    id: str = Field(
        description="The trigger's automation id on the Prefect server (pause and resume name it)."
    )
    name: str
    label: str = Field(description="The events it waits for.")
    enabled: bool = Field(description="false while paused.")


class PipelineDeployment(BaseModel):
    name: str
    flow: str
    full_name: str = Field(description="flow/deployment, as Prefect names it.")
    description: str
    tags: list[str]
    parameters: dict[str, Any] = Field(description="Default parameters from prefect.yaml.")
    work_pool: str | None
    schedules: list[PipelineSchedule]
    triggers: list[PipelineTrigger]
    emits: list[str] = Field(description="The events its flow emits.")
    runs: list[PipelineRun] | None = Field(
        default=None,
        description="Its newest flow runs on the Prefect server; null without a Prefect server or when the "
        "deployment is not deployed there (runs_note says which).",
    )
    runs_note: str | None = None
    parameter_schema: dict[str, Any] | None = Field(
        default=None,
        description="The deployment's parameter schema on the Prefect server (the run form's fields).",
    )
    prefect_schedules: list[PrefectSchedule] = Field(
        default_factory=list, description="Its schedules on the Prefect server, with their ids and state."
    )
    prefect_triggers: list[PrefectTrigger] = Field(
        default_factory=list,
        description="Its event triggers on the Prefect server (the automations `prefect deploy` made of "
        "prefect.yaml's triggers), with their ids and state.",
    )


class Pipelines(BaseModel):
    source: str = Field(description="The prefect.yaml read.")
    prefect_configured: bool = Field(description="Whether PREFECT_API_URL names a Prefect server.")
    prefect_error: str | None = Field(description="Why the Prefect server's runs could not be read.")
    deployments: list[PipelineDeployment]


def prefect_yaml_path() -> Path:
    """``$ODS_PROJECT_DIR/prefect.yaml``, else the one beside this code's ``src/`` folder."""
    project = os.environ.get("ODS_PROJECT_DIR")
    root = Path(project) if project else Path(ods.__file__).resolve().parents[2]
    return root / "prefect.yaml"


def _read_prefect_yaml() -> str:
    path = prefect_yaml_path()
    if not path.is_file():
        raise PipelinesFileError(
            f"no prefect.yaml at {path}: set ODS_PROJECT_DIR to the checkout of ONE-DATA-STUDIO that holds it"
        )
    return path.read_text(encoding="utf-8")


@router.get(
    "", summary="The deployments of prefect.yaml and their last runs", response_model=Envelope[Pipelines]
)
def list_pipelines() -> Envelope[Pipelines]:
    """Each deployment of prefect.yaml with its schedules, its event triggers and the events its flow emits;
    with a Prefect server configured, its newest flow runs there."""
    path = prefect_yaml_path()
    deployments = parse_pipelines(_read_prefect_yaml(), source_name=str(path))
    prefect = PrefectDeployments()
    configured = prefect.configured()
    error: str | None = None
    shown = []
    for deployment in deployments:
        deployed: DeployedView | None = None
        note = None if configured else "no Prefect server (PREFECT_API_URL unset)"
        if configured and error is None:
            try:
                deployed = prefect.describe(deployment.full_name, RECENT_RUNS)
            except SettingsError as unreachable:
                error = str(unreachable)
            if deployed is None and error is None:
                note = "not deployed to the Prefect server"
        shown.append(_view(deployment, deployed, note))
    return ok(
        Pipelines(source=str(path), prefect_configured=configured, prefect_error=error, deployments=shown)
    )


def _view(deployment: Deployment, deployed: DeployedView | None, note: str | None) -> PipelineDeployment:
    """prefect.yaml's ``deployment`` (its fields by name), with what the Prefect server holds of it."""
    view = PipelineDeployment.model_validate(deployment, from_attributes=True)
    if deployed is None:
        return view.model_copy(update={"runs_note": note})
    runs = [PipelineRun.model_validate(run, from_attributes=True) for run in deployed.runs]
    schedules = [PrefectSchedule.model_validate(entry, from_attributes=True) for entry in deployed.schedules]
    return view.model_copy(
        update={
            "runs": runs,
            "runs_note": note,
            "parameter_schema": deployed.parameter_schema,
            "prefect_schedules": schedules,
            "prefect_triggers": [
                PrefectTrigger.model_validate(entry, from_attributes=True) for entry in deployed.triggers
            ],
        }
    )


class StartRun(BaseModel):
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="The run's parameters; Prefect checks them against the deployment's schema.",
    )


class StartedRun(BaseModel):
    deployment: str = Field(description="flow/deployment.")
    flow_run_id: str = Field(description="The flow run on the Prefect server; a worker of its pool runs it.")


class ScheduleState(BaseModel):
    deployment: str
    schedule_id: str
    active: bool


def _deployed(name: str) -> tuple[Deployment, PrefectDeployments]:
    """prefect.yaml's deployment ``name`` and the configured Prefect server; refused without one."""
    known = {d.name: d for d in parse_pipelines(_read_prefect_yaml(), source_name="prefect.yaml")}
    if name not in known:
        raise NotFoundError(f"prefect.yaml has no deployment {name!r}; known: {', '.join(sorted(known))}")
    prefect = PrefectDeployments()
    if not prefect.configured():
        raise SettingsError(
            "no Prefect server: set PREFECT_API_URL for `ods serve` and deploy prefect.yaml to it to start "
            "deployments or pause their schedules"
        )
    return known[name], prefect


@router.post(
    "/{name}/runs",
    summary="Start a run of a deployment",
    status_code=202,
    response_model=Envelope[StartedRun],
)
def start_run(name: str, body: StartRun) -> Envelope[StartedRun]:
    """Create a flow run of prefect.yaml's deployment ``name`` on the Prefect server, now, with ``parameters``."""
    deployment, prefect = _deployed(name)
    run_id = uuid.uuid4().hex
    flow_run = prefect.start(
        deployment.full_name,
        body.parameters,
        run_id=run_id,
        flow_run_name=f"{deployment.name}-console-{run_id[:8]}",
    )
    return ok(StartedRun(deployment=deployment.full_name, flow_run_id=flow_run))


@router.post(
    "/{name}/schedules/{schedule_id}/pause",
    summary="Pause a schedule",
    response_model=Envelope[ScheduleState],
)
def pause_schedule(name: str, schedule_id: str) -> Envelope[ScheduleState]:
    """Pause one schedule of deployment ``name`` on the Prefect server (no run is scheduled until resumed)."""
    return ok(_set_active(name, schedule_id, False))


@router.post(
    "/{name}/schedules/{schedule_id}/resume",
    summary="Resume a schedule",
    response_model=Envelope[ScheduleState],
)
def resume_schedule(name: str, schedule_id: str) -> Envelope[ScheduleState]:
    """Resume a paused schedule of deployment ``name`` on the Prefect server."""
    return ok(_set_active(name, schedule_id, True))


def _set_active(name: str, schedule_id: str, active: bool) -> ScheduleState:
    deployment, prefect = _deployed(name)
    _require_uuid("schedule", schedule_id)
    prefect.set_schedule_active(deployment.full_name, schedule_id, active)
    return ScheduleState(deployment=deployment.full_name, schedule_id=schedule_id, active=active)


class TriggerState(BaseModel):
    deployment: str
    trigger_id: str
    enabled: bool


@router.post(
    "/{name}/triggers/{trigger_id}/pause", summary="Pause a trigger", response_model=Envelope[TriggerState]
)
def pause_trigger(name: str, trigger_id: str) -> Envelope[TriggerState]:
    """Pause one event trigger of deployment ``name`` on the Prefect server: its events start no run until
    it is resumed. Pausing a paused trigger changes nothing."""
    return ok(_set_enabled(name, trigger_id, False))


@router.post(
    "/{name}/triggers/{trigger_id}/resume", summary="Resume a trigger", response_model=Envelope[TriggerState]
)
def resume_trigger(name: str, trigger_id: str) -> Envelope[TriggerState]:
    """Resume a paused event trigger of deployment ``name`` on the Prefect server."""
    return ok(_set_enabled(name, trigger_id, True))


def _set_enabled(name: str, trigger_id: str, enabled: bool) -> TriggerState:
    deployment, prefect = _deployed(name)
    _require_uuid("trigger", trigger_id)
    prefect.set_trigger_enabled(deployment.full_name, trigger_id, enabled)
    return TriggerState(deployment=deployment.full_name, trigger_id=trigger_id, enabled=enabled)


def _require_uuid(what: str, value: str) -> None:
    """NotFoundError unless ``value`` is a UUID (the ids of schedules and triggers on the Prefect server)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise NotFoundError(
            f"no {what} {value!r}: a {what} id is a UUID from GET /api/v1/pipelines"
        ) from None
