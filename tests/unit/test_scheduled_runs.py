"""Which scheduled runs a redeploy left behind and must do nothing (logic only; the lasting-server test
executes real leftovers, tests/e2e/test_lasting_server.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

from ods.domain.scheduled_runs import (
    ScheduledRun,
    leftover_skip_result,
    redeploy_leftover_cover,
)

DEPLOYMENT = UUID(int=1)
OLD, NEW = UUID(int=10), UUID(int=20)
AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def run(number: int, schedule: UUID | None, state: str = "SCHEDULED", **changes: object) -> ScheduledRun:
    fields: dict[str, object] = {
        "id": UUID(int=number),
        "deployment_id": DEPLOYMENT,
        "auto_scheduled": schedule is not None,
        "expected_start_time": AT,
        "schedule_id": schedule,
        "state_type": state,
    }
    return ScheduledRun(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_run_of_a_replaced_schedule_skips_when_a_current_run_covers_its_time() -> None:
    leftover, current = run(100, OLD), run(200, NEW)

    assert redeploy_leftover_cover(leftover, {NEW}, [current]) == current
    assert redeploy_leftover_cover(current, {NEW}, [leftover]) is None


def test_the_covering_run_counts_whatever_its_state_but_cancelled() -> None:
    leftover = run(100, OLD)

    for state in ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED"):
        assert redeploy_leftover_cover(leftover, {NEW}, [run(200, NEW, state)]) is not None, state
    for state in ("CANCELLED", "CANCELLING"):
        assert redeploy_leftover_cover(leftover, {NEW}, [run(200, NEW, state)]) is None, state


def test_a_leftover_with_no_current_run_for_its_time_runs() -> None:
    leftover = run(100, OLD)  # e.g. it started before the redeploy: losing a tick is worse
    other_time = run(200, NEW, expected_start_time=AT + timedelta(minutes=1))
    other_deployment = run(300, NEW, deployment_id=UUID(int=2))
    another_leftover = run(400, UUID(int=11))
    by_hand = run(500, None, deployment_id=DEPLOYMENT)

    assert redeploy_leftover_cover(leftover, {NEW}, []) is None
    assert (
        redeploy_leftover_cover(leftover, {NEW}, [other_time, other_deployment, another_leftover, by_hand])
        is None
    )


def test_among_current_runs_for_one_time_the_lowest_id_runs_and_the_others_name_it() -> None:
    first, second, third = run(200, NEW), run(300, NEW), run(400, UUID(int=21))
    current = {NEW, UUID(int=21)}
    every = [first, second, third]

    decisions = {item.id: redeploy_leftover_cover(item, current, every) for item in every}

    assert decisions == {first.id: None, second.id: first, third.id: first}
    assert redeploy_leftover_cover(run(100, OLD), current, every) == first
    # a cancelled lowest id does not count: the next one runs
    assert redeploy_leftover_cover(second, current, [run(200, NEW, "CANCELLED"), third]) is None


def test_runs_no_schedule_created_always_run() -> None:
    current = run(200, NEW)

    assert redeploy_leftover_cover(run(100, None), {NEW}, [current]) is None  # by hand or by a trigger
    assert redeploy_leftover_cover(run(100, OLD, auto_scheduled=False), {NEW}, [current]) is None
    assert redeploy_leftover_cover(run(100, OLD, deployment_id=None), {NEW}, [current]) is None


def test_the_skip_result_is_json_and_names_the_run_kept() -> None:
    kept = run(200, NEW)

    result = json.loads(leftover_skip_result(kept).model_dump_json())

    assert result == {
        "skipped": "redeploy-leftover",
        "kept_run": str(kept.id),
        "scheduled_time": "2026-12-06T10:00:00+00:00",
        "message": (
            f"run {kept.id} for 2026-12-06T10:00:00+00:00 from the deployment's current schedule covers "
            "this time; this run was left by a redeploy and does nothing"
        ),
    }
