"""A process that runs a flow the way `ods` commands do, for the tests that kill one.

`python -m tests.support.flow_processes hang` runs, through :func:`ods.orchestration.temporary_server.start_flow_runner`
(the runner every `ods` flow command uses), a flow whose task prints
``RUNNING <flow run id> <temporary server pid or ->`` and then sleeps until the process is killed.
`python -m tests.support.flow_processes states FLOW_RUN_ID` starts a runner the same way (so the sweep
of runs left by killed commands runs first) and prints the flow run's and its task runs' states as JSON.
`python -m tests.support.flow_processes twice` runs a flow through two runners in turn, as `ods demo` does,
and prints ``SERVERS <pid seen by each flow...> CHILDREN <temporary server processes this process started>``.
All run as `ods` does without --verbose: Prefect's console output dropped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_client, task

from ods.orchestration.temporary_server import OUTPUT, start_flow_runner


def _server_pid() -> str:
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    process = getattr(server, "server_process", None)
    return str(process.pid) if process is not None else "-"


def _temporary_server_children() -> list[str]:
    """Pids of this process's children that run the temporary server's module."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"ods.orchestration.temporary_server" in command:
            children.append(entry.name)
    return sorted(children)


@task(name="hang-here", persist_result=False)
def hang_here() -> None:
    from prefect.runtime import flow_run

    print("RUNNING", flow_run.id, _server_pid(), flush=True)
    while True:
        time.sleep(1)


@flow(name="hang-until-killed", persist_result=False)
def hang_until_killed() -> None:
    hang_here()


@flow(name="report-server", persist_result=False)
def report_server() -> str:
    return _server_pid()


def read_states(flow_run_id: str) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        task_runs = client.read_task_runs()
    return {
        "flow_run": {
            "state": run.state_type.value if run.state_type else None,
            "message": run.state.message if run.state else None,
            "tags": run.tags,
        },
        "task_runs": [
            {"name": item.name, "state": item.state_type.value if item.state_type else None}
            for item in task_runs
            if item.flow_run_id == run.id
        ],
    }


def main(argv: list[str]) -> None:
    OUTPUT.quiet_prefect = True
    runner = start_flow_runner()
    if argv[0] == "hang":
        runner.run(hang_until_killed)
    elif argv[0] == "twice":
        seen = [runner.run(report_server), start_flow_runner().run(report_server)]
        print("SERVERS", *seen, "CHILDREN", *_temporary_server_children(), flush=True)
    elif argv[0] == "states":
        print(json.dumps(runner.run(read_states, argv[1])), flush=True)
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}: hang, twice or states FLOW_RUN_ID")


if __name__ == "__main__":
    main(sys.argv[1:])
