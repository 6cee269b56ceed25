"""Runs whose process is killed outright (SIGKILL) end Crashed, on both kinds of Prefect server.

- Prefect's temporary server (no PREFECT_API_URL), as `ods` commands start it: the server dies with the
  killed command, and the next command marks the run and its task runs Crashed, while a command that runs
  beside a live one leaves that one's run alone.
- A lasting `prefect server start`: `ods prefect setup` installs the zombie-run automation once, and a flow
  run whose process is killed after its first heartbeat is Crashed by it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from ods.orchestration.runs import ZOMBIE_AUTOMATION_NAME, install_zombie_detection
from tests.support.cli import run_ods
from tests.support.prefect_server import PrefectServer, running_prefect_server, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _start_hanging_flow(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`tests.support.flow_processes hang`: its process, flow run id and temporary server pid (or -)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.flow_processes", "hang"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def running() -> list[str] | None:
        lines = [line.split() for line in log.read_text(errors="replace").splitlines()]
        return next((line for line in lines if line[:1] == ["RUNNING"]), None)

    _, run_id, server_pid = wait_for(running, "the flow's task running", process=process, log=log)
    return process, run_id, server_pid


def _flow_process(env: dict[str, str], *args: str) -> str:
    """`tests.support.flow_processes ARGS` to its end: what it printed (it must succeed)."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.support.flow_processes", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _states(env: dict[str, str], run_id: str) -> dict[str, Any]:
    states: dict[str, Any] = json.loads(_flow_process(env, "states", run_id).strip().splitlines()[-1])
    return states


def _gone(pid: int) -> bool:
    """No such process any more (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def test_a_killed_command_takes_its_temporary_server_along_and_the_next_one_crashes_its_run(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    hanging, run_id, server_pid = _start_hanging_flow(env, tmp_path / "hang.log")
    try:
        beside_a_live_one = _states(env, run_id)  # another command, its sweep included
    finally:
        hanging.kill()  # SIGKILL: no handler, no atexit, no chance to stop the server
        hanging.wait()

    wait_for(lambda: _gone(int(server_pid)), "the killed command's temporary server gone", timeout_s=60)
    after_the_kill = _states(env, run_id)

    assert beside_a_live_one["flow_run"]["state"] == "RUNNING"
    assert [task["state"] for task in beside_a_live_one["task_runs"]] == ["RUNNING"]
    assert after_the_kill["flow_run"]["state"] == "CRASHED"
    message = after_the_kill["flow_run"]["message"]
    assert f"pid {hanging.pid} on " in message and "re-run" in message
    assert [task["state"] for task in after_the_kill["task_runs"]] == ["CRASHED"]


def test_flows_run_by_two_runners_of_one_command_share_its_one_temporary_server(tmp_path: Path) -> None:
    """The server's process is launched before Prefect's server module is imported, and adopted by
    Prefect's launcher: the flows find that one server, and a second runner (`ods demo` makes three)
    launches no other."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    printed = _flow_process(env, "twice")

    words = printed.split("SERVERS", 1)[1].split()
    children = words[words.index("CHILDREN") + 1 :]
    assert words[:2] == children * 2, printed  # both flows on the one child server


@pytest.fixture(scope="module")
def lasting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real server that evaluates proactive automations every second (Prefect's default: 5 s)."""
    with running_prefect_server(
        tmp_path_factory.mktemp("prefect-zombies"),
        server_env={"PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S"},
    ) as server:
        yield server


def test_ods_prefect_setup_installs_the_zombie_automation_once(
    lasting_server: PrefectServer, tmp_path: Path
) -> None:
    def installed() -> list[dict[str, Any]]:
        return [
            item
            for item in lasting_server.post("/automations/filter")
            if item["name"] == ZOMBIE_AUTOMATION_NAME
        ]

    first = run_ods("prefect", "setup", cwd=tmp_path, env=lasting_server.env)
    # Prefect's client resends a create or delete the busy server answered 503 or too late, and the
    # server may apply the first try after the resend: a late duplicate can appear after a setup
    # returned. Each setup removes the extras it finds, so repeated setups settle on "unchanged".
    later = [run_ods("prefect", "setup", cwd=tmp_path, env=lasting_server.env) for _ in range(2)]
    while later[-1].stdout.startswith("updated") and len(later) < 5:
        later.append(run_ods("prefect", "setup", cwd=tmp_path, env=lasting_server.env))
    too_short = run_ods("prefect", "setup", "--missing-after", "100", cwd=tmp_path, env=lasting_server.env)

    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[0] in ("created", "updated")
    assert all(run.returncode == 0 for run in later), [run.stderr for run in later]
    assert [run.stdout.split()[0] for run in later][-1] == "unchanged", [run.stdout for run in later]
    assert "no heartbeat for 540 s" in later[-1].stdout
    automations = installed()
    assert len(automations) == 1
    assert automations[0]["trigger"]["within"] == 540.0
    assert automations[0]["actions"][0]["state"] == "CRASHED"
    assert too_short.returncode == 2
    assert too_short.stderr.strip().splitlines() == [
        "error: --missing-after 100 is under twice the heartbeat frequency (180 s, "
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY): healthy runs would be crashed between heartbeats; use at least 360"
    ]


def test_a_flow_run_whose_process_is_killed_is_crashed_by_the_automation(
    lasting_server: PrefectServer, tmp_path: Path
) -> None:
    # The shortest window Prefect accepts, so the test waits seconds, not minutes; the heartbeat
    # frequency's floor is 30 s, and the process is killed right after its first heartbeat.
    with (
        temporary_settings(updates={PREFECT_API_URL: lasting_server.api}),
        get_client(sync_client=True) as client,
    ):
        install_zombie_detection(client, timedelta(seconds=10))
    env = {**lasting_server.env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    hanging, run_id, _ = _start_hanging_flow(env, tmp_path / "hang.log")
    try:

        def heartbeat_seen() -> bool:
            body = {
                "filter": {
                    "event": {"name": ["prefect.flow-run.heartbeat"]},
                    "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                }
            }
            return bool(lasting_server.post("/events/filter", body)["events"])

        wait_for(heartbeat_seen, "the run's first heartbeat on the server", process=hanging)
    finally:
        stop_process(hanging, signal.SIGKILL)

    def crashed() -> dict[str, Any] | None:
        run: dict[str, Any] = httpx.get(f"{lasting_server.api}/flow_runs/{run_id}", timeout=10).json()
        return run if run["state_type"] == "CRASHED" else None

    run = wait_for(crashed, "the run marked Crashed by the automation", timeout_s=120)
    assert "no heartbeat for 10 s" in run["state"]["message"]
