"""Benchmark: what Prefect's temporary server costs an `ods` command that runs a flow.

An `ods` flow command with no PREFECT_API_URL starts a temporary Prefect server, runs its flow there and stops
the server (docs/operations.md). The baseline is the same command against a lasting `prefect server start`
that this script starts once, beforehand (the tests' `running_prefect_server`): the command then only
connects. Both run the same short flow to its end (`ods models undeploy nosuch`: the undeploy-model flow,
which finds nothing to stop), alternately, so both see the same machine load; each run has a fresh ODS_HOME, and each kind of server keeps its own
PREFECT_HOME (migrated by a first, untimed run).

It prints the median and spread of each command's wall time, and the ratio temporary / lasting.

    .venv/bin/python benchmarks/flow_command.py            # 7 runs of each
    .venv/bin/python benchmarks/flow_command.py --runs 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support; ods is installed

from tests.support.prefect_server import running_prefect_server

COMMAND = ("models", "undeploy", "nosuch")


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
    with tempfile.TemporaryDirectory(prefix="ods-bench-flow-") as name:
        folder = Path(name)
        # The tests' lasting server: `prefect server start` on a free port, and its clients' environment.
        with running_prefect_server(folder / "lasting") as server:
            lasting = server.env
            temporary = {key: value for key, value in lasting.items() if key != "PREFECT_API_URL"}
            temporary["PREFECT_HOME"] = str(folder / "temporary-home")
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
