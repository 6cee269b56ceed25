"""A scheduled flow run that a redeploy left beside the current schedule's run for its time does nothing.

The race itself needs a lasting server's scheduler (tests/e2e/test_lasting_server.py executes the runs it
leaves). Here the same pair is built on the test server, deterministically: runs backfilled for past
times survive a schedule replacement (Prefect only deletes future runs), and a second backfill gives the
new schedule its runs for the same times. The runs are then executed in this process by Prefect's flow
engine, as a worker's engine process would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prefect import Flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.flow_engine import run_flow
from prefect.schedules import Interval
from prefect.settings import PREFECT_API_URL

from flows.check_health import check_health
from flows.sync_knowledge_bases import sync_knowledge_bases
from flows.watch_bucket import watch_bucket
from ods.orchestration.runs import find_redeploy_leftover_cover

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
LEFT_BY_A_REDEPLOY = "this run was left by a redeploy and does nothing"


@pytest.fixture
def client() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


def _send(method: str, url: str, **options: Any) -> httpx.Response:
    """One request to the test server, sent again while it answers 503: its SQLite database is briefly
    locked when other test processes load the machine (Prefect's own client retries 503 the same way)."""
    for attempt in range(6):
        response = httpx.request(method, url, timeout=10, **options)
        if response.status_code != 503:
            break
        time.sleep(0.5 * 2**attempt)
    return response.raise_for_status()


def _backfill(deployment_id: str, times: list[datetime]) -> None:
    """The deployment's schedule creates its runs for ``times`` (past minutes), as its scheduler would."""
    api = PREFECT_API_URL.value()
    for when in times:
        body = {"start_time": when.isoformat(), "end_time": when.isoformat(), "min_runs": 1, "max_runs": 1}
        _send("POST", f"{api}/deployments/{deployment_id}/schedule", json=body)


def _redeploy(deployment_id: str) -> None:
    """What `.apply()` of the deployment sends again: its schedules, replaced (new ids)."""
    api = PREFECT_API_URL.value()
    deployment = _send("GET", f"{api}/deployments/{deployment_id}").json()
    body = {
        "schedules": [{"schedule": s["schedule"], "active": s["active"]} for s in deployment["schedules"]]
    }
    _send("PATCH", f"{api}/deployments/{deployment_id}", json=body)


def _leftovers_and_current_runs(
    client: SyncPrefectClient, flow: Flow[..., Any], name: str, times: list[datetime]
) -> tuple[dict[datetime, Any], dict[datetime, Any]]:
    """Deploy ``flow`` with a one-minute schedule, give it runs for ``times``, redeploy it and give the
    new schedule runs for the same times: (leftover, current) run by time."""
    deployment_id = str(flow.to_deployment(name=name, schedule=Interval(60, anchor_date=ANCHOR)).apply())
    _backfill(deployment_id, times)
    before = {run.expected_start_time: run for run in _scheduled(client, deployment_id)}
    _redeploy(deployment_id)
    _backfill(deployment_id, times)
    current = {
        run.expected_start_time: run
        for run in _scheduled(client, deployment_id)
        if run.id not in {left.id for left in before.values()}
    }
    assert sorted(before) == sorted(current) == times
    return before, current


def _scheduled(client: SyncPrefectClient, deployment_id: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return [
        run
        for run in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        if run.auto_scheduled
    ]


def _minutes_ago(*minutes: int) -> list[datetime]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return sorted(now - timedelta(minutes=m) for m in minutes)


@pytest.mark.parametrize(
    ("flow", "did_work"),
    [
        (watch_bucket, lambda result: result.model_dump() == {"events": [], "recorded": 0}),
        (sync_knowledge_bases, lambda result: result.model_dump() == {"synced": 0, "knowledge_bases": []}),
        (check_health, lambda result: isinstance(result, list) and len(result) > 1),
    ],
    ids=["watch-bucket", "sync-knowledge-bases", "check-health"],
)
def test_a_leftover_run_does_nothing_and_the_current_schedules_run_does_the_work(
    client: SyncPrefectClient, flow: Flow[..., Any], did_work: Callable[[Any], bool]
) -> None:
    (when,) = _minutes_ago(5)
    leftovers, current = _leftovers_and_current_runs(client, flow, f"leftover-{flow.name}", [when])
    leftover, kept = leftovers[when], current[when]

    skipped = run_flow(flow, flow_run=client.read_flow_run(leftover.id))
    worked = run_flow(flow, flow_run=client.read_flow_run(kept.id))

    assert skipped.model_dump(mode="json") == {
        "skipped": "redeploy-leftover",
        "kept_run": str(kept.id),
        "scheduled_time": when.isoformat(),
        "message": f"run {kept.id} for {when.isoformat()} from the deployment's current schedule covers "
        f"this time; {LEFT_BY_A_REDEPLOY}",
    }
    assert did_work(worked), worked
    states = {client.read_flow_run(run.id).state_type.value for run in (leftover, kept)}
    assert states == {"COMPLETED"}


def test_a_leftover_started_after_the_current_run_completed_does_nothing_either(
    client: SyncPrefectClient,
) -> None:
    times = _minutes_ago(3, 2)
    leftovers, current = _leftovers_and_current_runs(client, watch_bucket, "leftover-after", times)

    results = [run_flow(watch_bucket, flow_run=client.read_flow_run(current[times[0]].id))]
    results.append(run_flow(watch_bucket, flow_run=client.read_flow_run(leftovers[times[0]].id)))
    # the guard reads the same pair the other way round: the current run never skips
    later = client.read_flow_run(current[times[1]].id)

    assert results[0].model_dump() == {"events": [], "recorded": 0}
    assert results[1].kept_run == str(current[times[0]].id)
    assert find_redeploy_leftover_cover(client, later) is None
    assert find_redeploy_leftover_cover(client, client.read_flow_run(leftovers[times[1]].id)).id == later.id


def test_a_local_call_or_a_manual_run_of_a_deployment_does_its_work(client: SyncPrefectClient) -> None:
    deployment_id = watch_bucket.to_deployment(name="leftover-manual").apply()
    manual = client.create_flow_run_from_deployment(deployment_id)

    assert watch_bucket().model_dump() == {"events": [], "recorded": 0}
    assert run_flow(watch_bucket, flow_run=client.read_flow_run(manual.id)).model_dump() == {
        "events": [],
        "recorded": 0,
    }
    assert find_redeploy_leftover_cover(client, client.read_flow_run(manual.id)) is None
