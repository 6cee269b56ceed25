"""Is a scheduled run a leftover of a redeploy, which must do nothing because another run covers its time?

A redeploy (`prefect deploy`, ``.apply()``, serve) replaces a deployment's schedules (new ids) and deletes
their future runs. Prefect 3.9 does not serialise that with its scheduler: an insert of the replaced
schedule's runs that commits after the delete leaves them beside the new schedule's runs, two runs for
one scheduled time, and a worker runs both. Each scheduled flow asks this first
(``tasks/schedules.py``); a leftover returns at once with :func:`leftover_skip_result`.

Runs are matched by scheduled time, so a schedule's times must not move with a redeploy: cron schedules
keep them; an interval needs an ``anchor_date`` in prefect.yaml (`prefect deploy` would anchor it at its
own second).

Pure: the caller reads the run, the deployment's current schedule ids and the same deployment's runs
for the same time (:func:`ods.orchestration.runs.find_redeploy_leftover_cover`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

CANCELLED_STATES = frozenset({"CANCELLED", "CANCELLING"})
"""States of a run that will not do its time's work (a cancelled run covers nothing)."""

SKIP_REASON: Literal["redeploy-leftover"] = "redeploy-leftover"


@dataclass(frozen=True)
class ScheduledRun:
    """What the decision needs of a flow run: who created it, for which deployment and time, its state."""

    id: UUID
    deployment_id: UUID | None
    auto_scheduled: bool
    expected_start_time: datetime | None
    schedule_id: UUID | None  # the creating schedule (``created_by`` of type SCHEDULE); None otherwise
    state_type: str = "SCHEDULED"

    @property
    def is_cancelled(self) -> bool:
        return self.state_type.upper() in CANCELLED_STATES


def could_be_leftover(run: ScheduledRun) -> bool:
    """Whether ``run`` is a run a schedule created, the only kind a redeploy can leave behind (when not,
    nothing else needs reading)."""
    return (
        run.auto_scheduled
        and run.schedule_id is not None
        and run.deployment_id is not None
        and run.expected_start_time is not None
    )


def redeploy_leftover_cover(
    run: ScheduledRun, current_schedule_ids: Collection[UUID], same_time_runs: Iterable[ScheduledRun]
) -> ScheduledRun | None:
    """The run that covers ``run``'s scheduled time when ``run`` must skip itself; None when it must run.

    ``run`` skips when its schedule is no longer one of the deployment's current schedules and another
    non-cancelled auto-scheduled run of the same deployment, for the same time, comes from a current
    schedule (the lowest id of them, named as the one kept). With no such run ``run`` goes on, e.g. a
    run that started before the redeploy: losing a tick is worse than a doubled one. Among several
    current-schedule runs for one time (Prefect's idempotency key should prevent it) the lowest id runs
    and the others skip, so duplicates starting together agree. Runs that were not auto-scheduled (by
    hand, by an event trigger) always run.
    """
    if not could_be_leftover(run):
        return None
    current = set(current_schedule_ids)
    covering = sorted(
        (
            other
            for other in same_time_runs
            if other.id != run.id
            and other.auto_scheduled
            and other.deployment_id == run.deployment_id
            and other.expected_start_time == run.expected_start_time
            and other.schedule_id in current
            and not other.is_cancelled
        ),
        key=lambda other: other.id,
    )
    if not covering:
        return None
    kept = covering[0]
    if run.schedule_id in current and run.id < kept.id:
        return None
    return kept


def leftover_message(kept: ScheduledRun) -> str:
    """The log line of a skipped leftover, naming the run kept."""
    when = kept.expected_start_time.isoformat() if kept.expected_start_time else "its time"
    return (
        f"run {kept.id} for {when} from the deployment's current schedule covers this time; "
        "this run was left by a redeploy and does nothing"
    )


class LeftoverSkip(BaseModel):
    """What a scheduled flow's run left by a redeploy returns instead of its work (JSON:
    ``{"skipped": "redeploy-leftover", "kept_run": ID, "scheduled_time": ISO 8601 or None, "message": ...}``)."""

    model_config = ConfigDict(frozen=True)

    skipped: Literal["redeploy-leftover"] = SKIP_REASON
    kept_run: str = Field(description="Id of the run from the current schedule that does this time's work.")
    scheduled_time: str | None = Field(description="The scheduled time both runs share (ISO 8601).")
    message: str = Field(description="The log line naming the run kept.")


def leftover_skip_result(kept: ScheduledRun) -> LeftoverSkip:
    """What a skipped leftover returns, naming the run ``kept``."""
    return LeftoverSkip(
        kept_run=str(kept.id),
        scheduled_time=kept.expected_start_time.isoformat() if kept.expected_start_time else None,
        message=leftover_message(kept),
    )
