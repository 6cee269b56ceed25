"""``/api/v1/runs``: the runs the server started (ingests after an upload or a delete, dataset prepares,
deploys, undeploys), kept in the catalog so an id is answered after a restart too."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from ods.api.background import KEPT_RUNS_DAYS, BackgroundRun, RunKind, RunState, ServerRuns
from ods.api.envelope import Envelope, ok
from ods.api.tenancy import CallerTenant
from ods.errors import NotFoundError

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

RUN_ID_PATTERN = r"^[0-9a-f]{32}$"


class Run(BaseModel):
    """A background run and how it went."""

    id: str = Field(description="The run id (32 hex digits), as the request that started it answered.")
    kind: Literal["ingest", "deploy", "undeploy", "prepare"] = Field(
        description="ingest: a knowledge base synced with its source; deploy / undeploy: a model's "
        "endpoint started or stopped; prepare: a dataset version prepared from a spec and a raw table."
    )
    knowledge_base: str | None = Field(description="The knowledge base an ingest syncs; null otherwise.")
    target: str | None = Field(
        description="What a deploy or undeploy works on (the model ref asked for); a prepare's dataset."
    )
    state: Literal["queued", "running", "completed", "failed", "interrupted"] = Field(
        description="interrupted: the server running it stopped (killed, crashed) before it ended; the next "
        "server to start marked it so, and `error` says what to do (doing it again is safe)."
    )
    requested_by: list[str] = Field(
        description="What asked for it (e.g. 'upload notes.md', 'delete document 7'): requests made while "
        "it waited to start joined it."
    )
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None = Field(description="How long it ran (so far, while running).")
    result: dict[str, Any] | None = Field(
        description="A completed ingest's summary: indexed, chunks, unchanged, quarantined (with each "
        "document's reason), deleted, and seconds per stage; a deploy's endpoint (url, served_model, …); an "
        "undeploy's stopped endpoints; a prepare's version (status registered or rejected, and for a rejected "
        "one the failed expectations in reason and the quarantine_uri). Null for a run done by a Prefect flow "
        "run: its result is that flow run's (the Prefect UI, or the catalog: GET /api/v1/datasets/{name})."
    )
    error: str | None = Field(description="Why a failed or interrupted run ended so, in one line.")
    prefect_flow_run_id: str | None = Field(
        description="The Prefect flow run doing the work, when the server started a deployment "
        "(ODS_API__RUNS); its state, timings and error are then read from Prefect."
    )
    prefect_state: str | None = Field(
        description="That flow run's state in Prefect (Scheduled, Pending, Running, Completed, Failed, "
        "Crashed, …); Scheduled until a worker of the deployment's pool takes it."
    )


def run_view(run: BackgroundRun) -> Run:
    """The run as the API shows it (its fields by name)."""
    return Run.model_validate(run, from_attributes=True)


@router.get("", summary="The newest runs", response_model=Envelope[list[Run]])
def list_runs(
    runs: ServerRuns,
    tenant: CallerTenant,
    kind: Annotated[RunKind | None, Query(description="Only runs of this kind.")] = None,
    state: Annotated[RunState | None, Query(description="Only runs in this state.")] = None,
    target: Annotated[
        str | None,
        Query(max_length=200, description="Only runs on this dataset, model ref or knowledge base."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first.")] = 50,
) -> Envelope[list[Run]]:
    """The newest runs of the caller's tenant, newest first, from the catalog (a restart forgets none)."""
    found = runs.list(kind=kind, state=state, target=target, limit=limit, tenant=tenant)
    return ok([run_view(run) for run in found])


@router.get("/{run_id}", summary="A background run's state and result", response_model=Envelope[Run])
def get_run(
    run_id: Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run id.")],
    runs: ServerRuns,
    tenant: CallerTenant,
) -> Envelope[Run]:
    """State (queued, running, completed, failed, interrupted), timings, and the result or the one-line
    error. Runs are kept in the catalog: an id stays answered after the server restarts (for 30 days after
    the run ended). A run done by a Prefect flow run answers that flow run's state, read from Prefect."""
    run = runs.get(run_id)
    if run.tenant != tenant:
        raise NotFoundError(
            f"no run {run_id!r}: run ids are answered for {KEPT_RUNS_DAYS} days after the run ended"
        )
    return ok(run_view(run))
