"""`check_health`: the `ods doctor` checks as a deployable flow, for scheduled monitoring.

A run that a redeploy left beside the current schedule's run for its time does nothing
(tasks/schedules.py).
"""

from __future__ import annotations

from prefect import flow

from ods.domain.scheduled_runs import LeftoverSkip
from ods.stages.health import COMPONENTS, CheckResult
from tasks.health import check_component, report_health
from tasks.presets import FLOW_RESULTS
from tasks.schedules import skip_redeploy_leftover


@flow(name="check-health", **FLOW_RESULTS)
def check_health(deep: bool = False) -> list[CheckResult] | LeftoverSkip:
    """Check every configured component; the run fails when one is not OK.

    Args:
        deep: also load the embedding model and compare every knowledge base with its index (slower).

    Returns one result per component, or the skip result of a redeploy's leftover run
    (:class:`ods.domain.scheduled_runs.LeftoverSkip`).
    """
    if (skipped := skip_redeploy_leftover()) is not None:
        return skipped
    futures = [check_component.submit(component, deep) for component in COMPONENTS]
    results = [future.result() for future in futures]
    report_health(results)
    return results


if __name__ == "__main__":
    check_health()
