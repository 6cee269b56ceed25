"""Which runs count as orphaned (their process gone) and the zombie automation's definition (logic only;
tests/e2e/test_killed_runs.py kills real processes on real servers)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from uuid import uuid4

import pytest

from ods.orchestration.runs import (
    CLI_RUN_TAG,
    RunProcess,
    current_process,
    orphaned_runs,
    process_is_alive,
    zombie_automation,
)


def test_a_process_tag_names_host_pid_and_start_time_and_reads_back() -> None:
    process = RunProcess(host="worker-1.example", pid=4321, started="987654")

    assert process.tag == "ods-process:worker-1.example:4321:987654"
    assert RunProcess.from_tags([CLI_RUN_TAG, process.tag]) == process
    assert RunProcess.from_tags(["ods-process:h:77:"]) == RunProcess(host="h", pid=77, started="")
    assert RunProcess.from_tags([CLI_RUN_TAG, "nightly"]) is None
    assert RunProcess.from_tags(["ods-process:h:not-a-pid:1"]) is None


def test_only_runs_of_this_host_whose_process_is_gone_are_orphaned() -> None:
    dead, alive, elsewhere, untagged = uuid4(), uuid4(), uuid4(), uuid4()
    tags = {
        dead: [CLI_RUN_TAG, "ods-process:here:100:5"],
        alive: [CLI_RUN_TAG, "ods-process:here:200:5"],
        elsewhere: [CLI_RUN_TAG, "ods-process:there:100:5"],
        untagged: [CLI_RUN_TAG],
    }
    living = {RunProcess("here", 200, "5")}

    orphans = orphaned_runs(tags, host="here", is_alive=lambda process: process in living)

    assert orphans == {dead: RunProcess("here", 100, "5")}
    assert "pid 100 on here" in orphans[dead].crash_message()


def test_a_reused_pid_or_a_reaped_process_is_not_alive() -> None:
    me = current_process()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    assert process_is_alive(me)
    assert me.pid == os.getpid() and me.started  # /proc gives the start time here
    assert not process_is_alive(RunProcess(me.host, me.pid, str(int(me.started) + 1)))
    assert not process_is_alive(RunProcess(me.host, child.pid, ""))


def test_the_zombie_automation_crashes_runs_whose_heartbeats_stop() -> None:
    automation = zombie_automation(timedelta(minutes=9))

    trigger = automation.trigger
    assert trigger.after == {"prefect.flow-run.heartbeat"}  # type: ignore[union-attr]
    assert "prefect.flow-run.Completed" in trigger.expect  # type: ignore[union-attr]
    assert trigger.within == timedelta(minutes=9)  # type: ignore[union-attr]
    assert automation.actions[0].type == "change-flow-run-state"
    with pytest.raises(ValueError, match="at least 10 s"):
        zombie_automation(timedelta(seconds=5))
