"""Tasks that check the platform's components."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from ods.errors import OdsError
from ods.settings import get_settings
from ods.stages.health import CheckResult, run_check
from tasks.presets import HEALTH_ARTIFACT, JSON_RESULTS


@task(name="check-component", task_run_name="check-{component}", **JSON_RESULTS)
def check_component(component: str, deep: bool = False) -> CheckResult:
    """Check one component and log its state."""
    result = run_check(component, get_settings(), deep=deep)
    logger = get_run_logger()
    log = logger.error if not result.ok else logger.warning if result.warning else logger.info
    log("%s %s: %s", component, result.status, result.detail)
    return result


@task(name="report-health", **JSON_RESULTS)
def report_health(results: list[CheckResult]) -> None:
    """Publish the checks as a table artifact and fail if any component is down."""
    create_table_artifact(
        key=HEALTH_ARTIFACT,
        table=[{**asdict(result), "ok": result.status} for result in results],
        description="State of every configured ods component",
    )
    failed = [f"{result.component} ({result.detail})" for result in results if not result.ok]
    if failed:
        raise OdsError("unhealthy components: " + "; ".join(failed))
