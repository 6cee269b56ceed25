"""`python -m deployments.serve` against a real `prefect server start`: every deployment of prefect.yaml,
with its schedules and trigger automations, appears in the API; Ctrl-C stops the process cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(probe: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what}: process exited {process.returncode}:\n{log.read_text()[-3000:]}")
        result = probe()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"{what} not reached in {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Prefect server on a free loopback port (SQLite), and the environment its clients use."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {name: value for name, value in os.environ.items() if not name.startswith("ODS_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_UI_ENABLED="false",
        ODS_HOME=str(home / "ods"),
    )
    log = home / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-ui",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(healthy, "Prefect server health", server, log)
        yield url, {**env, "PREFECT_API_URL": url}
    finally:
        _stop(server, signal.SIGTERM)


def test_serve_registers_every_deployment_with_schedules_and_triggers(
    prefect_api: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = prefect_api
    specs = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        expected_triggers = sum(len(spec.get("triggers") or []) for spec in specs)

        def all_registered() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            # A deployment's triggers are created after it: wait for both, so the stop below comes
            # after registration, as a user's Ctrl-C on a running server does.
            found = httpx.post(f"{url}/deployments/filter", json={}, timeout=5).json()
            triggers = httpx.post(f"{url}/automations/filter", json={}, timeout=5).json()
            complete = len(found) == len(specs) and len(triggers) == expected_triggers
            return (found, triggers) if complete else None

        found, automations = _wait_for(all_registered, "all deployments and their triggers", serve, log)
        deployments = {d["name"]: d for d in found}
    finally:
        _stop(serve, signal.SIGINT)

    assert serve.returncode == 0, log.read_text()[-3000:]
    assert set(deployments) == {spec["name"] for spec in specs}
    for spec in specs:
        deployment = deployments[spec["name"]]
        assert deployment["entrypoint"] == spec["entrypoint"]
        assert deployment["parameters"] == (spec.get("parameters") or {})
        assert len(deployment["schedules"]) == len(spec.get("schedules") or [])
    assert len(automations) == expected_triggers
    served_ids = {d["id"] for d in deployments.values()}
    for automation in automations:
        assert automation["actions"][0]["deployment_id"] in served_ids
