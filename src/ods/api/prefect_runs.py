"""Runs `ods serve` hands to Prefect: a deployment of prefect.yaml started, its flow run's state read back.

With a Prefect server configured (``PREFECT_API_URL``) and prefect.yaml deployed (`prefect deploy --all`),
a dataset registration, a deploy and an undeploy through the API start the prepare-dataset,
deploy-model[-cpu] and undeploy-model deployments, so the work runs on the workers of their pools (a GPU
worker for vLLM), shows in the Prefect UI, and follows the pools' concurrency limits, exactly as a flow
run started from the CLI or by a trigger. ``ODS_API__RUNS`` chooses (see ``ods.settings.ApiSettings``).

The flow run is created with ``run_deployment(..., timeout=0)``: it returns at once with the run scheduled,
and ``GET /api/v1/runs/{id}`` reads its state from Prefect on each call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ods.errors import OdsError, SettingsError

RunState = Literal["queued", "running", "completed", "failed", "interrupted"]

_STATES: dict[str, RunState] = {
    "SCHEDULED": "queued",
    "PENDING": "queued",
    "PAUSED": "queued",
    "RUNNING": "running",
    "CANCELLING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CRASHED": "failed",
    "CANCELLED": "failed",
}
DEPLOY_HINT = (
    "deploy prefect.yaml to it (`prefect --no-prompt deploy --all` from the project root, ODS_PROJECT_DIR "
    "set; docs/operations.md) or set ODS_API__RUNS=auto or server to run it in `ods serve`"
)


class DeploymentNotFoundError(SettingsError):
    """The Prefect server has no such deployment: prefect.yaml was not deployed to it."""


@dataclass(frozen=True)
class FlowRunState:
    """A Prefect flow run as `GET /api/v1/runs/{id}` shows it."""

    state: RunState
    prefect_state: str
    """Prefect's state name (Scheduled, Pending, Running, Completed, Failed, Crashed, …)."""
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None


class PrefectDeployments:
    """The deployments and flow runs of the configured Prefect server, through its client."""

    def configured(self) -> bool:
        """Whether a Prefect server is configured (PREFECT_API_URL)."""
        from prefect.settings import get_current_settings

        return bool(get_current_settings().api.url)

    def exists(self, name: str) -> bool:
        """Whether the deployment ``flow/deployment`` is on the server."""
        from prefect import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
        except Exception as error:  # noqa: BLE001 - an unreachable server is said in one line
            raise _unreachable(error) from None
        return True

    def start(self, name: str, parameters: dict[str, Any], *, run_id: str, flow_run_name: str) -> str:
        """Create a flow run of deployment ``name`` now (scheduled; a worker of its pool runs it) and return
        its id. ``run_id`` is its idempotency key: asking again creates no second flow run."""
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        try:
            flow_run = run_deployment(
                name,
                parameters=parameters,
                timeout=0,
                idempotency_key=f"ods-serve-{run_id}",
                flow_run_name=flow_run_name,
                as_subflow=False,
                tags=["ods-serve"],
            )
        except ObjectNotFound:
            raise DeploymentNotFoundError(
                f"no deployment {name!r} on the Prefect server: {DEPLOY_HINT}"
            ) from None
        except OdsError:
            raise
        except Exception as error:  # noqa: BLE001 - an unreachable server is said in one line
            raise _unreachable(error) from None
        assert isinstance(flow_run, FlowRun)  # called from a worker thread: no event loop, no coroutine
        return str(flow_run.id)

    def state(self, flow_run_id: str) -> FlowRunState:
        """The flow run's state now."""
        from prefect import get_client

        try:
            with get_client(sync_client=True) as client:
                flow_run = client.read_flow_run(uuid.UUID(flow_run_id))
        except Exception as error:  # noqa: BLE001 - an unreachable server is said in one line
            raise _unreachable(error) from None
        state = flow_run.state
        state_type = "PENDING" if state is None else state.type.value
        return FlowRunState(
            state=_STATES.get(state_type, "queued"),
            prefect_state=(None if state is None else state.name) or state_type.title(),
            started_at=flow_run.start_time,
            finished_at=flow_run.end_time,
            message=None if state is None or not state.message else " ".join(state.message.split()),
        )

    def recent_runs(self, name: str, limit: int) -> list[RecentRun] | None:
        """The newest ``limit`` flow runs of deployment ``flow/deployment`` (newest expected start first), or
        None when the server has no such deployment."""
        from prefect import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name(name)
                flow_runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                    limit=limit,
                )
        except ObjectNotFound:
            return None
        except Exception as error:  # noqa: BLE001 - an unreachable server is said in one line
            raise _unreachable(error) from None
        runs = []
        for flow_run in flow_runs:
            state = flow_run.state
            state_type = "PENDING" if state is None else state.type.value
            runs.append(
                RecentRun(
                    id=str(flow_run.id),
                    name=flow_run.name,
                    state=_STATES.get(state_type, "queued"),
                    prefect_state=(None if state is None else state.name) or state_type.title(),
                    started_at=flow_run.start_time or flow_run.expected_start_time,
                )
            )
        return runs


@dataclass(frozen=True)
class RecentRun:
    """One flow run of a deployment, as the pipelines page lists it."""

    id: str
    name: str
    state: RunState
    prefect_state: str
    started_at: datetime | None


def _unreachable(error: Exception) -> SettingsError:
    from prefect.settings import get_current_settings

    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return SettingsError(
        f"cannot reach the Prefect API {get_current_settings().api.url}: {first}; check PREFECT_API_URL"
    )
