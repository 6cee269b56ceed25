"""The first task of every scheduled flow (check-health, watch-bucket, sync-knowledge-bases): is this run
a leftover of a redeploy, whose scheduled time another run covers?

A redeploy racing Prefect's scheduler can leave a run of the replaced schedule beside the new schedule's
run for the same time (see :mod:`ods.domain.scheduled_runs`); a worker would run both. The leftover
returns the skip result at once instead. Outside a deployment's scheduled run (a local call, a test, an
`ods` command, a manual or triggered run) nothing is read.
"""

from __future__ import annotations

import httpx
from prefect import task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import PrefectException
from prefect.logging import get_run_logger

from ods.domain.scheduled_runs import LeftoverSkip, leftover_skip_result
from ods.orchestration.runs import find_redeploy_leftover_cover
from tasks.presets import NOT_PERSISTED


@task(name="check-redeploy-leftover", **NOT_PERSISTED)
def skip_redeploy_leftover() -> LeftoverSkip | None:
    """The skip result (:class:`ods.domain.scheduled_runs.LeftoverSkip`) when this flow run is a
    leftover of a redeploy, with a log line naming the run kept; None when the flow must do its work.

    When the check itself cannot reach the API the run goes on: a doubled run is idempotent, a lost
    tick is not made up.
    """
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is None or flow_run.deployment_id is None:
        return None
    try:
        with get_client(sync_client=True) as client:
            kept = find_redeploy_leftover_cover(client, flow_run)
    except (httpx.HTTPError, PrefectException) as error:
        get_run_logger().warning("could not check whether a redeploy left this run (%s); running it", error)
        return None
    if kept is None:
        return None
    result = leftover_skip_result(kept)
    get_run_logger().warning(result.message)
    return result
