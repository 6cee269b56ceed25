"""How `ods` commands run flows: the temporary server started early, heartbeats off on it (logic only;
tests/e2e run the commands against real temporary servers)."""

from __future__ import annotations

import threading

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from ods.cli_prefect import FlowRunner, start_flow_runner


class FakeServer:
    """Stands in for Prefect's temporary server: start() blocks until the test releases it."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.release = threading.Event()
        self.started = False
        self.failure = failure

    def start(self) -> None:
        self.release.wait(timeout=10)
        if self.failure is not None:
            raise self.failure
        self.started = True


def test_a_flow_runs_once_the_server_has_started_and_without_heartbeats() -> None:
    server = FakeServer()
    runner = FlowRunner(server)
    seen: list[tuple[bool, int | None]] = []

    def flow(a: int, *, b: int) -> int:
        seen.append((server.started, PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()))
        return a + b

    threading.Timer(0.2, server.release.set).start()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):
        assert runner.run(flow, 1, b=2) == 3
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 180  # restored after the run

    assert seen == [(True, None)]


def test_a_server_that_fails_to_start_fails_the_command_before_the_flow() -> None:
    server = FakeServer(
        failure=RuntimeError("Timed out while attempting to connect to ephemeral Prefect API")
    )
    server.release.set()
    runner = FlowRunner(server)
    called: list[bool] = []

    with pytest.raises(RuntimeError, match="Timed out"):
        runner.run(lambda: called.append(True))

    assert called == []


def test_with_a_configured_api_the_flow_runs_as_prefect_is_configured() -> None:
    with temporary_settings(
        updates={PREFECT_API_URL: "http://127.0.0.1:4200/api", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}
    ):
        runner = start_flow_runner()  # starts nothing: a configured server is used as it is

        assert runner.run(PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value) == 60
