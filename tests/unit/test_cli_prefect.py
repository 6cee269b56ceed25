"""How `ods` commands run flows: the temporary server started early, then the sweep of runs left by killed
commands; on it, heartbeats off and the runs tagged with their process; results as JSON everywhere (logic
only; tests/e2e run the commands against real temporary servers)."""

from __future__ import annotations

import threading

import pytest
from prefect.context import TagsContext
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_RESULTS_DEFAULT_SERIALIZER,
    temporary_settings,
)

from ods.errors import OdsError
from ods.orchestration.temporary_server import MIN_STARTUP_WAIT_S, FlowRunner, start_flow_runner


class FakeServer:
    """Stands in for Prefect's temporary server: start() blocks until the test releases it."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.release = threading.Event()
        self.started = False
        self.failure = failure
        self.timeout: float | None = None

    def start(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.release.wait(timeout=10)
        if self.failure is not None:
            raise self.failure
        self.started = True


def test_a_flow_runs_once_the_server_has_started_and_the_sweep_ran_without_heartbeats_and_tagged() -> None:
    server = FakeServer()
    swept: list[bool] = []
    runner = FlowRunner(server, after_start=lambda: swept.append(server.started), tags=("ods-cli", "p:1"))
    seen: list[tuple[bool, list[bool], int | None, str, set[str]]] = []

    def flow(a: int, *, b: int) -> int:
        seen.append(
            (
                server.started,
                list(swept),
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value(),
                PREFECT_RESULTS_DEFAULT_SERIALIZER.value(),
                TagsContext.get().current_tags,
            )
        )
        return a + b

    threading.Timer(0.2, server.release.set).start()
    with temporary_settings(
        updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180, PREFECT_RESULTS_DEFAULT_SERIALIZER: "pickle"}
    ):
        assert runner.run(flow, 1, b=2) == 3
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 180  # restored after the run
        assert PREFECT_RESULTS_DEFAULT_SERIALIZER.value() == "pickle"

    assert seen == [(True, [True], None, "json", {"ods-cli", "p:1"})]
    assert server.timeout == MIN_STARTUP_WAIT_S  # Prefect's 20 s default raised for a busy machine


def test_a_server_that_fails_to_start_fails_the_command_before_the_flow() -> None:
    server = FakeServer(
        failure=RuntimeError("Timed out while attempting to connect to ephemeral Prefect API")
    )
    server.release.set()
    runner = FlowRunner(server)
    called: list[bool] = []

    with pytest.raises(OdsError, match="temporary server did not start: Timed out") as raised:
        runner.run(lambda: called.append(True))

    assert isinstance(raised.value.__cause__, RuntimeError)

    assert called == []


def test_with_a_configured_api_the_flow_runs_as_prefect_is_configured() -> None:
    with temporary_settings(
        updates={PREFECT_API_URL: "http://127.0.0.1:4200/api", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}
    ):
        runner = start_flow_runner()  # starts nothing: a configured server is used as it is

        assert runner.run(PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value) == 60
        assert runner.run(lambda: TagsContext.get().current_tags) == set()
        assert runner.run(PREFECT_RESULTS_DEFAULT_SERIALIZER.value) == "json"
