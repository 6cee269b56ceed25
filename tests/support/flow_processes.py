"""A process that runs a flow the way `ods` commands do, for the tests that kill one.

`python -m tests.support.flow_processes hang` runs, through :func:`ods.orchestration.temporary_server.start_flow_runner`
(the runner every `ods` flow command uses), a flow whose task prints
``RUNNING <flow run id> <temporary server pid or ->`` and then sleeps until the process is killed.
`python -m tests.support.flow_processes states FLOW_RUN_ID` starts a runner the same way (so the sweep
of runs left by killed commands runs first) and prints the flow run's and its task runs' states as JSON.
Both run as `ods` does without --verbose: Prefect's console output dropped.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any
from uuid import UUID

from prefect import flow, get_client, task

from ods.orchestration.temporary_server import OUTPUT, start_flow_runner


@task(name="hang-here", persist_result=False)
def hang_here() -> None:
    from prefect.runtime import flow_run
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    process = getattr(server, "server_process", None)
    print("RUNNING", flow_run.id, process.pid if process is not None else "-", flush=True)
    while True:
        time.sleep(1)


@flow(name="hang-until-killed", persist_result=False)
def hang_until_killed() -> None:
    hang_here()


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
    elif argv[0] == "states":
        print(json.dumps(runner.run(read_states, argv[1])), flush=True)
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}: hang or states FLOW_RUN_ID")


if __name__ == "__main__":
    main(sys.argv[1:])
