"""`check_health`: the `ods doctor` checks as a deployable flow, for scheduled monitoring."""

from __future__ import annotations

from typing import Any

from prefect import flow

from ods.diagnostics import COMPONENTS
from tasks.health import check_component, report_health
from tasks.results import FLOW_RESULTS


@flow(name="check-health", **FLOW_RESULTS)
def check_health(deep: bool = False) -> list[dict[str, Any]]:
    """Check every configured component; the run fails when one is not OK.

    Args:
        deep: also load the embedding model and compare every knowledge base with its index (slower).
    """
    futures = [check_component.submit(component, deep) for component in COMPONENTS]
    results = [future.result() for future in futures]
    report_health(results)
    return results


if __name__ == "__main__":
    check_health()
