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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ods.errors import NotFoundError, OdsError, SettingsError

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
        from prefect.exceptions import PrefectHTTPStatusError

        with _deployment_errors(name):
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
            except PrefectHTTPStatusError as error:
                if error.response.status_code not in (409, 422):  # else parameters the schema refuses
                    raise
                raise OdsError(f"the Prefect server refused a run of {name!r}: {_detail(error)}") from None
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
        run_state, prefect_state = _state_of(flow_run)
        return FlowRunState(
            state=run_state,
            prefect_state=prefect_state,
            started_at=flow_run.start_time,
            finished_at=flow_run.end_time,
            message=None if state is None or not state.message else " ".join(state.message.split()),
        )

    def describe(self, name: str, runs: int) -> DeployedView | None:
        """Deployment ``flow/deployment`` as the Prefect server has it (its parameter schema, its schedules
        with their ids and its ``runs`` newest flow runs that are due), or None when the server has no such deployment."""
        from prefect import get_client
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterExpectedStartTime,
        )
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.exceptions import ObjectNotFound

        due = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC)))
        try:
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name(name)
                flow_runs = (
                    client.read_flow_runs(  # the newest due runs, not those its schedule planned ahead
                        flow_run_filter=due,
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                        limit=runs,
                    )
                )
                automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
        except ObjectNotFound:
            return None
        except Exception as error:  # noqa: BLE001 - an unreachable server is said in one line
            raise _unreachable(error) from None
        recent = []
        for flow_run in flow_runs:
            state, prefect_state = _state_of(flow_run)
            started_at = flow_run.start_time or flow_run.expected_start_time
            recent.append(RecentRun(str(flow_run.id), flow_run.name, state, prefect_state, started_at))
        schedules = tuple(
            DeployedSchedule(
                id=str(entry.id), active=bool(entry.active), label=_schedule_label(entry.schedule)
            )
            for entry in deployment.schedules or ()
        )
        triggers = tuple(
            DeployedTrigger(
                id=str(automation.id),
                name=automation.name,
                enabled=bool(automation.enabled),
                label=_trigger_label(automation.trigger),
            )
            for automation in automations
        )
        return DeployedView(
            parameter_schema=dict(deployment.parameter_openapi_schema or {}),
            schedules=schedules,
            runs=recent,
            triggers=triggers,
        )

    def set_schedule_active(self, name: str, schedule_id: str, active: bool) -> None:
        """Pause (``active=False``) or resume one schedule of deployment ``flow/deployment``."""
        from prefect import get_client

        with _deployment_errors(name), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(name)
            if not any(str(entry.id) == schedule_id for entry in deployment.schedules or ()):
                raise NotFoundError(
                    f"deployment {name!r} has no schedule {schedule_id!r} on the Prefect server"
                )
            client.update_deployment_schedule(deployment.id, uuid.UUID(schedule_id), active=active)

    def set_trigger_enabled(self, name: str, trigger_id: str, enabled: bool) -> None:
        """Pause (``enabled=False``) or resume one trigger of deployment ``flow/deployment``: the automation
        `prefect deploy` made of a prefect.yaml trigger, which runs the deployment when its events arrive."""
        from prefect import get_client

        with _deployment_errors(name), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(name)
            related = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
            if not any(str(automation.id) == trigger_id for automation in related):
                raise NotFoundError(
                    f"deployment {name!r} has no trigger {trigger_id!r} on the Prefect server"
                )
            if enabled:
                client.resume_automation(uuid.UUID(trigger_id))
            else:
                client.pause_automation(uuid.UUID(trigger_id))


@dataclass(frozen=True)
class RecentRun:
    """One flow run of a deployment, as the pipelines page lists it."""

    id: str
    name: str
    state: RunState
    prefect_state: str
    started_at: datetime | None


@dataclass(frozen=True)
class DeployedSchedule:
    """A schedule of a deployment on the Prefect server."""

    id: str
    active: bool
    label: str


@dataclass(frozen=True)
class DeployedTrigger:
    """An event trigger of a deployment on the Prefect server (an automation that runs it)."""

    id: str
    name: str
    enabled: bool
    label: str


@dataclass(frozen=True)
class DeployedView:
    """What the Prefect server holds of a deployment: the schema of its parameters, its schedules, its
    newest flow runs."""

    parameter_schema: dict[str, Any]
    schedules: tuple[DeployedSchedule, ...]
    runs: list[RecentRun]
    triggers: tuple[DeployedTrigger, ...] = ()


def _trigger_label(trigger: object) -> str:
    """The events a trigger waits for, short: ``ods.object.created | ods.object.deleted``."""
    expect = sorted(getattr(trigger, "expect", None) or ())
    return " | ".join(expect) if expect else type(trigger).__name__


def _schedule_label(schedule: object) -> str:
    cron = getattr(schedule, "cron", None)
    if cron:
        return f"cron {cron}"
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        seconds = interval.total_seconds()
        return f"every {seconds / 60:g} min" if seconds >= 60 else f"every {seconds:g} s"
    return type(schedule).__name__


@contextmanager
def _deployment_errors(name: str) -> Iterator[None]:
    """Prefect's failures around deployment ``name`` as one-line errors: not deployed, or unreachable."""
    from prefect.exceptions import ObjectNotFound

    try:
        yield
    except ObjectNotFound:
        raise DeploymentNotFoundError(
            f"no deployment {name!r} on the Prefect server: {DEPLOY_HINT}"
        ) from None
    except OdsError:
        raise
    except Exception as error:  # noqa: BLE001 - an unreachable server is said in one line
        raise _unreachable(error) from None


def _state_of(flow_run: Any) -> tuple[RunState, str]:
    """A flow run's state as ours (queued, running, …) and as Prefect names it (Scheduled, Crashed, …)."""
    state = flow_run.state
    state_type = "PENDING" if state is None else state.type.value
    return _STATES.get(state_type, "queued"), (None if state is None else state.name) or state_type.title()


def _detail(error: Any) -> str:
    """The one-line reason of a Prefect API refusal (its JSON ``detail``, else the response text)."""
    try:
        detail = error.response.json().get("detail")
    except ValueError:
        detail = None
    return " ".join(str(detail or error.response.text or error).split())[:500]


def _unreachable(error: Exception) -> SettingsError:
    from prefect.settings import get_current_settings

    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return SettingsError(
        f"cannot reach the Prefect API {get_current_settings().api.url}: {first}; check PREFECT_API_URL"
    )
