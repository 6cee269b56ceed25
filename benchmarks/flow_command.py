"""Benchmark: what Prefect's temporary server costs an `ods` command that runs a flow.

An `ods` flow command with no PREFECT_API_URL starts a temporary Prefect server, runs its flow there and stops
the server (docs/orchestration.md). The baseline is the same command against a lasting `prefect server start`
that this script starts once, beforehand: the command then only connects. Both run the same short flow to its
end (`ods models undeploy nosuch`: the undeploy-model flow, which finds nothing to stop), alternately, so
both see the same machine load; each run has a fresh ODS_HOME, and each kind of server keeps its own
PREFECT_HOME (migrated by a first, untimed run).

It prints the median and spread of each command's wall time, and the ratio temporary / lasting.

    .venv/bin/python benchmarks/flow_command.py            # 7 runs of each
    .venv/bin/python benchmarks/flow_command.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ods.adapters.workers.processes import free_port

COMMAND = ("models", "undeploy", "nosuch")
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}


def _environment(prefect_home: Path, api_url: str | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("ODS_", "PREFECT_"))}
    env.update(QUIET, PREFECT_HOME=str(prefect_home))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextmanager
def lasting_server(folder: Path) -> Iterator[str]:
    """`prefect server start` on a free loopback port; yields its API URL once it answers."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _environment(folder / "prefect-home", None)
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{folder / 'prefect.db'}"
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "PREFECT_UI_ENABLED": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"prefect server start exited; see {folder / 'server.log'}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("prefect server start did not answer in 120 s")
            time.sleep(0.3)
        yield api
    finally:
        process.terminate()
        process.wait(timeout=30)


def timed_command(folder: Path, env: dict[str, str], run: int) -> float:
    """Seconds one `ods` flow command takes, in a fresh ODS_HOME; it must succeed."""
    home = folder / f"ods-{run}"
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "ods", *COMMAND],
        env={**env, "ODS_HOME": str(home)},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"`ods {' '.join(COMMAND)}` failed:\n{completed.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ods-bench-flow-") as name, lasting_server(Path(name)) as api:
        folder = Path(name)
        temporary = _environment(folder / "temporary-home", None)
        lasting = _environment(folder / "prefect-home", api)
        timed_command(folder, temporary, -1)  # migrates the temporary server's database once, untimed
        timed_command(folder, lasting, -2)
        times: dict[str, list[float]] = {"temporary": [], "lasting": []}
        for run in range(args.runs):
            times["temporary"].append(timed_command(folder, temporary, 2 * run))
            times["lasting"].append(timed_command(folder, lasting, 2 * run + 1))
    print(f"`ods {' '.join(COMMAND)}`, {args.runs} runs of each, alternating:")
    for kind, values in times.items():
        print(
            f"  {kind:9} server: median {statistics.median(values):5.2f} s "
            f"(min {min(values):5.2f}, max {max(values):5.2f})"
        )
    ratio = statistics.median(times["temporary"]) / statistics.median(times["lasting"])
    print(f"temporary / lasting (baseline): {ratio:.2f}x")


if __name__ == "__main__":
    main()
