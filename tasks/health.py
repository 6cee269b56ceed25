"""Tasks that check the platform's components."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from ods.errors import OdsError
from ods.settings import get_settings
from ods.stages.health import run_check
from tasks.results import JSON_RESULTS


@task(name="check-component", task_run_name="check-{component}", **JSON_RESULTS)
def check_component(component: str, deep: bool = False) -> dict[str, Any]:
    """Check one component and log its state."""
    result = run_check(component, get_settings(), deep=deep)
    logger = get_run_logger()
    log = logger.error if not result.ok else logger.warning if result.warning else logger.info
    log("%s %s: %s", component, result.status, result.detail)
    return asdict(result)


@task(name="report-health", **JSON_RESULTS)
def report_health(results: list[dict[str, Any]]) -> None:
    """Publish the checks as a table artifact and fail if any component is down."""
    create_table_artifact(
        key="ods-health",
        table=[
            {**row, "ok": "FAIL" if not row["ok"] else "WARN" if row.get("warning") else "OK"}
            for row in results
        ],
        description="State of every configured ods component",
    )
    failed = [f"{row['component']} ({row['detail']})" for row in results if not row["ok"]]
    if failed:
        raise OdsError("unhealthy components: " + "; ".join(failed))
