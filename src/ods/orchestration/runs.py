"""What ods adds to Prefect's run records: results stored as JSON, and runs whose process died marked Crashed.

Prefect marks a run Crashed when its process sees the end coming (SIGTERM, an exception), not when the
process is killed outright (SIGKILL, the OOM killer, a lost machine): such runs stay Running. Two remedies,
one per kind of server:

- A lasting server (``PREFECT_API_URL``): flow runs send heartbeats, and the automation that
  :func:`install_zombie_detection` installs crashes a run whose heartbeats stop (Prefect's "zombie flow"
  recipe). ``ods prefect setup`` installs it.
- Prefect's temporary server, which an ``ods`` command starts on the SQLite database under ``PREFECT_HOME``:
  no server outlives the command to watch heartbeats, so each run an ``ods`` command starts is tagged with
  the process that runs it (:class:`RunProcess`), and the next command sweeps: :func:`crash_orphaned_runs`
  crashes the Running or Pending runs whose process is gone, and their unfinished task runs.

It also tells a scheduled run that a redeploy left beside the current schedule's run for the same time
(:func:`find_redeploy_leftover_cover`, the decision in :mod:`ods.domain.scheduled_runs`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ods.adapters.workers.processes import pid_exists
from ods.domain.scheduled_runs import ScheduledRun, could_be_leftover, redeploy_leftover_cover

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.events.schemas.automations import AutomationCore

# Every run an `ods` command starts on the temporary server carries this tag and one `ods-process:` tag.
CLI_RUN_TAG = "ods-cli"
PROCESS_TAG_PREFIX = "ods-process:"
ZOMBIE_AUTOMATION_NAME = "ods: crash flow runs whose heartbeats stopped"
# Prefect refuses proactive triggers watching a shorter window.
MIN_MISSING_AFTER = timedelta(seconds=10)
_UNFINISHED = ("RUNNING", "PENDING")
_PROC = Path("/proc")


@contextmanager
def json_results() -> Iterator[None]:
    """Results and failed states' exceptions that Prefect persists are written as JSON, never pickle.

    The flows and tasks also name the JSON serializer themselves; this covers whatever result store
    Prefect creates without them (``PREFECT_RESULTS_DEFAULT_SERIALIZER``, whose default is pickle).
    """
    from prefect.settings import PREFECT_RESULTS_DEFAULT_SERIALIZER, temporary_settings

    if PREFECT_RESULTS_DEFAULT_SERIALIZER.value() == "json":
        yield
        return
    with temporary_settings(updates={PREFECT_RESULTS_DEFAULT_SERIALIZER: "json"}):
        yield


@dataclass(frozen=True)
class RunProcess:
    """The process that runs a flow: host, pid and the pid's start time (which tells a reused pid apart)."""

    host: str
    pid: int
    started: str = ""  # the start time in clock ticks since boot (/proc/PID/stat), "" where unknown

    @property
    def tag(self) -> str:
        return f"{PROCESS_TAG_PREFIX}{self.host}:{self.pid}:{self.started}"

    @classmethod
    def from_tags(cls, tags: Sequence[str]) -> RunProcess | None:
        """The process named by a run's ``ods-process:HOST:PID:START`` tag; None when it has none."""
        for tag in tags:
            if not tag.startswith(PROCESS_TAG_PREFIX):
                continue
            host, _, rest = tag.removeprefix(PROCESS_TAG_PREFIX).partition(":")
            pid, _, started = rest.partition(":")
            if host and pid.isdigit():
                return cls(host=host, pid=int(pid), started=started)
        return None

    def crash_message(self) -> str:
        return (
            f"the process that ran it (pid {self.pid} on {self.host}) was killed or died before the run "
            "ended; re-run the command that started it"
        )


def current_process() -> RunProcess:
    """This process, as the tag of the runs it starts will name it."""
    pid = os.getpid()
    return RunProcess(host=socket.gethostname(), pid=pid, started=_start_ticks(pid) or "")


def process_is_alive(process: RunProcess) -> bool:
    """Whether ``process`` (on this host) still runs: same pid, same start time, not a zombie."""
    if not (_PROC / "self" / "stat").is_file():  # no /proc: the pid alone
        return pid_exists(process.pid)
    started = _start_ticks(process.pid)
    return started is not None and (not process.started or started == process.started)


def _start_ticks(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot; None when no live process has that pid."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()  # after "(comm)": state is field 3, starttime field 22
    if len(fields) < 20:
        return ""
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return None
    return fields[19]


def orphaned_runs(
    tags_by_run: Mapping[UUID, Sequence[str]],
    *,
    host: str,
    is_alive: Callable[[RunProcess], bool] = process_is_alive,
) -> dict[UUID, RunProcess]:
    """The runs (of those given with their tags) whose process on ``host`` is gone.

    Runs without a process tag and runs of other hosts are left alone: nothing here can tell whether
    their process lives.
    """
    orphans: dict[UUID, RunProcess] = {}
    for run_id, tags in tags_by_run.items():
        process = RunProcess.from_tags(tags)
        if process is not None and process.host == host and not is_alive(process):
            orphans[run_id] = process
    return orphans


def crash_orphaned_runs(
    client: SyncPrefectClient,
    *,
    host: str | None = None,
    is_alive: Callable[[RunProcess], bool] = process_is_alive,
) -> list[UUID]:
    """Mark Crashed the unfinished runs of ``ods`` commands whose process is gone, with their task runs.

    One filtered read when there is nothing to do. Returns the ids of the flow runs it crashed.
    """
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = [StateType(name) for name in _UNFINISHED]
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[CLI_RUN_TAG]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)),
        )
    )
    orphans = orphaned_runs(
        {run.id: run.tags for run in runs}, host=host or socket.gethostname(), is_alive=is_alive
    )
    if not orphans:
        return []
    for run_id, process in orphans.items():
        client.set_flow_run_state(run_id, Crashed(message=process.crash_message()), force=True)
    task_runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=list(orphans)),
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished)),
        )
    )
    for task_run in task_runs:
        owner = orphans.get(task_run.flow_run_id) if task_run.flow_run_id else None
        message = owner.crash_message() if owner else "its flow run crashed"
        client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    return list(orphans)


def scheduled_run(flow_run: FlowRun) -> ScheduledRun:
    """What :mod:`ods.domain.scheduled_runs` needs of a Prefect flow run."""
    creator = flow_run.created_by
    from_schedule = creator is not None and (creator.type or "").upper() == "SCHEDULE"
    return ScheduledRun(
        id=flow_run.id,
        deployment_id=flow_run.deployment_id,
        auto_scheduled=flow_run.auto_scheduled,
        expected_start_time=flow_run.expected_start_time,
        schedule_id=creator.id if from_schedule and creator is not None else None,
        state_type=flow_run.state_type.value if flow_run.state_type is not None else "",
    )


def find_redeploy_leftover_cover(client: SyncPrefectClient, flow_run: FlowRun) -> ScheduledRun | None:
    """The run from the deployment's current schedule that covers ``flow_run``'s scheduled time when
    ``flow_run`` is a leftover of a redeploy and must do nothing; None when it must run.

    No API call for a run no schedule created (a local call, an `ods` command, a manual or triggered
    run); one filtered read of the deployment's runs for the same time; a second (the deployment's
    schedules) only when other scheduled runs share that time.
    """
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
    )

    run = scheduled_run(flow_run)
    if not could_be_leftover(run) or run.deployment_id is None:
        return None
    same_time = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[run.deployment_id]),
            expected_start_time=FlowRunFilterExpectedStartTime(
                after_=run.expected_start_time, before_=run.expected_start_time
            ),
        )
    )
    others = [scheduled_run(other) for other in same_time if other.id != run.id and other.auto_scheduled]
    if not others:
        return None
    deployment = client.read_deployment(run.deployment_id)
    return redeploy_leftover_cover(run, [schedule.id for schedule in deployment.schedules], others)


def zombie_automation(missing_after: timedelta) -> AutomationCore:
    """Prefect's zombie-flow automation: a flow run with no heartbeat (nor final state) for
    ``missing_after`` after its last heartbeat is set to Crashed."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if missing_after < MIN_MISSING_AFTER:
        raise ValueError(f"missing_after must be at least {MIN_MISSING_AFTER.total_seconds():g} s")
    return AutomationCore(
        name=ZOMBIE_AUTOMATION_NAME,
        description=(
            "Installed by `ods prefect setup`: a flow run that sent heartbeats and then none for "
            f"{missing_after.total_seconds():g} s (its process was killed or its machine lost) is Crashed."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=missing_after,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {missing_after.total_seconds():g} s: the process running it was "
                    "killed or its machine lost; re-run it"
                ),
            )
        ],
    )


def install_zombie_detection(client: SyncPrefectClient, missing_after: timedelta) -> str:
    """Create or update the zombie automation on the server ``client`` talks to; idempotent.

    Returns what was done: ``created``, ``updated`` or ``unchanged``.
    """
    wanted = zombie_automation(missing_after)
    existing = client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
    if not existing:
        client.create_automation(wanted)
        # The client resends a create the server answered late, which can leave two.
        for duplicate in client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)[1:]:
            client.delete_automation(duplicate.id)
        return "created"
    first, *duplicates = existing
    for duplicate in duplicates:
        client.delete_automation(duplicate.id)
    if not duplicates and _definition(first) == _definition(wanted):
        return "unchanged"
    client.update_automation(first.id, wanted)
    return "updated"


def _definition(automation: Any) -> dict[str, Any]:
    """What an automation does, without the ids the server assigns."""
    data: dict[str, Any] = automation.model_dump(
        mode="json", include={"name", "description", "enabled", "trigger", "actions"}
    )
    data["trigger"].pop("id", None)
    return data
