"""``/api/v1/runs``: the background runs the server started (ingests after an upload or a delete)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from ods.api.background import BackgroundRun, ServerRuns
from ods.api.envelope import Envelope, ok

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
    state: Literal["queued", "running", "completed", "failed"]
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
        "one the failed expectations in reason and the quarantine_uri)."
    )
    error: str | None = Field(description="Why a failed run failed, in one line.")


def run_view(run: BackgroundRun) -> Run:
    """The run as the API shows it."""
    return Run(
        id=run.id,
        kind=run.kind,
        knowledge_base=run.knowledge_base,
        target=run.target,
        state=run.state,
        requested_by=list(run.requested_by),
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        seconds=run.seconds,
        result=None if run.result is None else run.result.model_dump(mode="json"),
        error=run.error,
    )


@router.get("/{run_id}", summary="A background run's state and result", response_model=Envelope[Run])
def get_run(
    run_id: Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run id.")], runs: ServerRuns
) -> Envelope[Run]:
    """State (queued, running, completed, failed), timings, and the result or the one-line error. Runs
    live in the server's memory: a restart forgets them."""
    return ok(run_view(runs.get(run_id)))
