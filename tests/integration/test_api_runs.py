"""`ods serve`'s runs outlive the server process: a run id is answered after a restart with its final
state, and a run the server was killed in the middle of is marked interrupted, with what to do, by the
next server to start. The real `python -m ods serve` process, stopped with SIGTERM and SIGKILL, on a
SQLite and a PostgreSQL catalog."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ods.factories import build_object_store
from ods.settings import load_settings
from tests.support.api_envelope import data
from tests.support.api_process import ServeProcess, serve_env
from tests.support.postgres import temporary_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SMALL_ORDERS = b"id,status,amount\n1,paid,10.5\n2,pending,3\n3,paid,7.25\n"
LARGE_ROWS = 200_000
"""Rows of the table whose prepare the server is killed in: seconds of work, never milliseconds."""


def orders_spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"uri": "orders.csv"},
        "steps": [{"coerce": {"column": "amount", "type": "float"}}],
        "expectations": [{"not_null": {"column": "id"}}],
    }


@pytest.fixture(params=BACKENDS)
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeProcess]:
    """An `ods serve` (not started) on a fresh home, its catalog on the backend asked for."""
    if request.param == "sqlite":
        server = ServeProcess(serve_env(tmp_path), tmp_path / "serve.log")
        yield server
        server.close()
        return
    with temporary_database("ods_test_runs_") as url:
        server = ServeProcess(serve_env(tmp_path, ODS_CATALOG__URL=url), tmp_path / "serve.log")
        yield server
        server.close()


def store_table(serve: ServeProcess, key: str, content: bytes) -> str:
    """Put a raw table in the server's object store; its URI."""
    store = build_object_store(load_settings(home=Path(serve.env["ODS_HOME"])))
    store.put_bytes(key, content)
    return store.uri(key)


def run_of(client: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = data(client.get(f"/api/v1/runs/{run_id}"))
    return run


def finished_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The run once it ended (pytest-timeout stops a run that never ends)."""
    while (run := run_of(client, run_id))["finished_at"] is None:
        time.sleep(0.1)
    return run


def test_a_run_is_answered_after_a_restart_and_one_killed_midway_is_interrupted(serve: ServeProcess) -> None:
    small = store_table(serve, "raw/orders.csv", SMALL_ORDERS)
    rows = "".join(f"{number},paid,{number % 97}.5\n" for number in range(LARGE_ROWS))
    large = store_table(serve, "raw/big_orders.csv", f"id,status,amount\n{rows}".encode())

    serve.start()
    with httpx.Client(base_url=serve.base_url, timeout=60) as client:
        body = {"spec": orders_spec("orders"), "source_uri": small}
        done = finished_run(client, data(client.post("/api/v1/datasets", json=body), 202)["run"]["id"])
    assert done["state"] == "completed" and done["result"]["version"] == 1, done
    assert serve.stop() == -signal.SIGTERM

    serve.start()  # a graceful restart: the run is answered as it ended
    with httpx.Client(base_url=serve.base_url, timeout=60) as client:
        assert run_of(client, done["id"]) == done
        body = {"spec": orders_spec("big_orders"), "source_uri": large}
        started = data(client.post("/api/v1/datasets", json=body), 202)["run"]
        assert run_of(client, started["id"])["state"] == "running"
    assert serve.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-run: nothing ends the run

    serve.start()
    with httpx.Client(base_url=serve.base_url, timeout=60) as client:
        interrupted = run_of(client, started["id"])
        listed = data(client.get("/api/v1/runs", params={"state": "interrupted"}))
        assert run_of(client, done["id"])["state"] == "completed"
    assert interrupted["state"] == "interrupted" and interrupted["finished_at"] is not None, interrupted
    assert interrupted["error"] == (
        "interrupted: the server stopped (killed or crashed) while this prepare of big_orders was running; "
        "register the dataset again (the same spec and source): a re-run finds or makes the same version"
    )
    assert [run["id"] for run in listed] == [started["id"]]
    assert serve.stop() == -signal.SIGTERM
