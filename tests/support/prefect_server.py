"""A real `prefect server start` on a free loopback port, and the processes the e2e tests run against it.

One server per test module (starting one takes 4-8 s): :func:`running_prefect_server` yields how to reach
it, the environment its clients (`prefect deploy`, serve, workers, flows) need, and small API helpers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
T = TypeVar("T")

QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_RESULTS_DEFAULT_SERIALIZER": "json",
}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGINT) -> None:
    """Send ``sig`` and wait; SIGKILL after a grace period. Prefect workers and serve stop on SIGINT only."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    interval_s: float = 0.3,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``log``'s tail if ``process`` exits first
    or nothing came within ``timeout_s`` (a bound on a hung service, not a speed limit)."""
    deadline = time.monotonic() + timeout_s
    tail = lambda: log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""  # noqa: E731
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: process exited {process.returncode}:\n{tail()}")
        result = probe()
        if result:
            return result
        time.sleep(interval_s)
    pytest.fail(f"{what}: not reached in {timeout_s:.0f} s\n{tail()}")


@dataclass(frozen=True)
class PrefectServer:
    """How to reach a running server: its API URL and the environment of its clients."""

    api: str
    env: dict[str, str]
    home: Path
    log: Path

    def post(self, path: str, body: Any = None) -> Any:
        # A busy SQLite-backed server answers 503 while its database is locked; Prefect's own client
        # retries those, and so does this one (the creates used here are upserts).
        for attempt in range(6):
            response = httpx.post(f"{self.api}{path}", json=body if body is not None else {}, timeout=10)
            if response.status_code != 503 or attempt == 5:
                break
            time.sleep(0.5 * 2**attempt)
        response.raise_for_status()
        return response.json() if response.content else None

    def patch(self, path: str, body: Any) -> None:
        httpx.patch(f"{self.api}{path}", json=body, timeout=10).raise_for_status()

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def deployments(self) -> dict[str, dict[str, Any]]:
        """Every deployment by name."""
        return {deployment["name"]: deployment for deployment in self.post("/deployments/filter")}

    def flow_runs(self, deployment_id: str) -> list[dict[str, Any]]:
        """Every flow run of a deployment, oldest expected start first."""
        body = {
            "flow_runs": {"deployment_id": {"any_": [deployment_id]}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        }
        return list(self.post("/flow_runs/filter", body))

    def run(
        self, args: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout_s: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python <args>`` (e.g. ``["-m", "prefect", "deploy"]``) as a client of this server."""
        return subprocess.run(
            [sys.executable, *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(
        self, args: list[str], cwd: Path, log: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python <args>`` as a client of this server, its output in ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, *args],
                cwd=cwd,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )


@contextmanager
def running_prefect_server(
    home: Path, database_url: str | None = None, server_env: Mapping[str, str] | None = None
) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, on ``database_url`` (an asyncpg/aiosqlite URL;
    default a SQLite file in ``home``), with ``server_env`` added to the server's environment only
    (service loop intervals and the like). Stopped with SIGTERM at the end."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("ODS_", "PREFECT_"))}
    env.update(QUIET, PREFECT_HOME=str(home / "prefect-home"), ODS_HOME=str(home / "ods"))
    log = home / "server.log"
    database = database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    server = PrefectServer(api=api, env={**env, "PREFECT_API_URL": api}, home=home, log=log)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                *("--host", "127.0.0.1", "--port", str(port)),
                "--no-ui",
            ],
            env={**env, "PREFECT_SERVER_DATABASE_CONNECTION_URL": database, **(server_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, "Prefect server health", process=process, log=log)
        yield server
    finally:
        stop_process(process, signal.SIGTERM)
