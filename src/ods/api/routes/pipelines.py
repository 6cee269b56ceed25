"""``/api/v1/pipelines``: the deployments of prefect.yaml with their schedules, event triggers and the events
their flows emit (what the console's pipelines page draws), and, when a Prefect server is configured
(``PREFECT_API_URL``), each deployment's newest flow runs read from it.

prefect.yaml is read from ``ODS_PROJECT_DIR`` (the checkout the workers run, docs/operations.md), else from
the checkout that holds this code.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, Field

import ods
from ods.api.envelope import Envelope, ok
from ods.api.prefect_runs import PrefectDeployments
from ods.domain.pipelines import Deployment, PipelinesFileError, parse_pipelines
from ods.errors import SettingsError

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
        description="Its newest flow runs on the Prefect server; null without a Prefect server or when the "
        "deployment is not deployed there (runs_note says which)."
    )
    runs_note: str | None = None


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


@router.get(
    "", summary="The deployments of prefect.yaml and their last runs", response_model=Envelope[Pipelines]
)
def list_pipelines() -> Envelope[Pipelines]:
    """Each deployment of prefect.yaml with its schedules, its event triggers and the events its flow emits;
    with a Prefect server configured, its newest flow runs there."""
    path = prefect_yaml_path()
    if not path.is_file():
        raise PipelinesFileError(
            f"no prefect.yaml at {path}: set ODS_PROJECT_DIR to the checkout of ONE-DATA-STUDIO that holds it"
        )
    deployments = parse_pipelines(path.read_text(encoding="utf-8"), source_name=str(path))
    prefect = PrefectDeployments()
    configured = prefect.configured()
    error: str | None = None
    shown = []
    for deployment in deployments:
        runs: list[PipelineRun] | None = None
        note = None if configured else "no Prefect server (PREFECT_API_URL unset)"
        if configured and error is None:
            try:
                found = prefect.recent_runs(deployment.full_name, RECENT_RUNS)
            except SettingsError as unreachable:
                error = str(unreachable)
                found = None
            if found is None and error is None:
                note = "not deployed to the Prefect server"
            runs = None if found is None else [PipelineRun(**vars(run)) for run in found]
        shown.append(_view(deployment, runs, note))
    return ok(
        Pipelines(source=str(path), prefect_configured=configured, prefect_error=error, deployments=shown)
    )


def _view(deployment: Deployment, runs: list[PipelineRun] | None, note: str | None) -> PipelineDeployment:
    return PipelineDeployment(
        name=deployment.name,
        flow=deployment.flow,
        full_name=deployment.full_name,
        description=deployment.description,
        tags=list(deployment.tags),
        parameters=deployment.parameters,
        work_pool=deployment.work_pool,
        schedules=[
            PipelineSchedule(
                label=s.label, cron=s.cron, interval_s=s.interval_s, timezone=s.timezone, active=s.active
            )
            for s in deployment.schedules
        ],
        triggers=[
            PipelineTrigger(
                expect=list(t.expect),
                label=t.label,
                condition=t.condition,
                enabled=t.enabled,
                parameters=t.parameters,
            )
            for t in deployment.triggers
        ],
        emits=list(deployment.emits),
        runs=runs,
        runs_note=note,
    )
