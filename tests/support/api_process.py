"""`ods serve` as its own process (``python -m ods serve``), for the tests that stop, kill and restart it.

:class:`ServeProcess` starts the server on a fixed free loopback port, waits for ``/healthz``, and stops it
with SIGTERM (graceful: the lifespan ends) or SIGKILL (nothing runs after), waiting for the process so no
zombie keeps its pid alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.prefect_server import free_port, wait_for


class ServeProcess:
    """One `ods serve` at a time on ``port``, its output appended to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "ODS_API__PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once ``/healthz`` answers."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ods", "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, "ods serve /healthz", process=self.process, log=self.log, timeout_s=120)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the process to end; returns its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        status = self.process.wait(timeout=120)
        self.process = None
        return status

    def close(self) -> None:
        """SIGKILL a server still running (the end of a test that failed half-way)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def serve_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of an `ods serve` on ``home``: this one without ODS_/PREFECT_ variables, Prefect
    kept in ``home`` and offline, plus ``settings`` (``ODS_...`` names)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("ODS_", "PREFECT_"))}
    env.update(
        ODS_HOME=str(home / "ods-home"),
        PREFECT_HOME=str(home / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        ODS_API__RATE_LIMIT_METADATA="0",  # polling runs makes many requests
    )
    env.update(settings)
    return env
