"""The server's run queue: one run at a time, a sync asked for while one waits joins it, failures in one
line, a shutdown that interrupts what never started, and runs kept in the catalog: another queue on the
same catalog (a restarted server) answers them, and marks interrupted the runs a dead server left.
The sync is a fake injected through the constructor; the catalog is a real SQLite one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ods.adapters.catalog import Catalog
from ods.api.background import BackgroundRun, BackgroundRuns, DeploymentCall
from ods.api.prefect_runs import PrefectDeployments
from ods.api.run_events import RunEvent
from ods.errors import NotFoundError, OdsError, SettingsError
from ods.stages.ingest import IngestSummary


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield opened
    opened.close()


def queue(catalog: Catalog, sync: GatedSync, **options: object) -> BackgroundRuns:
    return BackgroundRuns(lambda: catalog, sync, **options)  # type: ignore[arg-type]


class GatedSync:
    """Syncs that wait for ``release`` before finishing, recording the order they ran in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.overlapping = 0
        self._active = 0
        self._lock = threading.Lock()

    def __call__(self, kb: str, tenant: str = "default") -> IngestSummary:
        with self._lock:
            self._active += 1
            self.overlapping = max(self.overlapping, self._active)
            self.started.append(kb)
        self.running.release()
        self.release.acquire()
        with self._lock:
            self._active -= 1
        if kb == "broken":
            raise OdsError("cannot list /gone:\nnot a directory")
        if kb == "crash":
            raise RuntimeError("secret detail")
        return IngestSummary(
            kb=kb,
            source="/docs",
            indexed=1,
            chunks=2,
            unchanged=0,
            quarantined=0,
            deleted=0,
            seconds={},
            quarantined_documents=[],
        )


def finished(runs: BackgroundRuns, run_id: str) -> BackgroundRun:
    while (run := runs.get(run_id)).finished_at is None:
        time.sleep(0.01)
    return run


def test_a_sync_asked_for_while_one_waits_joins_it_and_runs_never_overlap(catalog: Catalog) -> None:
    sync = GatedSync()
    events: list[RunEvent] = []
    runs = queue(catalog, sync, emit=events.append)

    first = runs.request_sync("handbook", "upload a.md")
    sync.running.acquire()  # the first run is running
    second = runs.request_sync("handbook", "upload b.md")  # waits: the running one may have listed already
    joined = runs.request_sync("handbook", "delete document 3")
    other = runs.request_sync("policies", "upload c.md")
    for _ in range(3):
        sync.release.release()

    done = [finished(runs, run.id) for run in (first, second, other)]
    assert second.id != first.id and joined.id == second.id
    assert runs.get(second.id).requested_by == ("upload b.md", "delete document 3")
    assert [run.state for run in done] == ["completed"] * 3
    assert sync.started == ["handbook", "handbook", "policies"] and sync.overlapping == 1
    assert done[0].result is not None and done[0].result["indexed"] == 1
    assert done[0].seconds is not None and done[0].seconds >= 0
    # Each sync that indexed something emitted ods.kb.updated, as the ingest flow's report task does.
    assert [(event.event, event.resource["prefect.resource.id"]) for event in events] == [
        ("ods.kb.updated", "ods.kb.handbook"),
        ("ods.kb.updated", "ods.kb.handbook"),
        ("ods.kb.updated", "ods.kb.policies"),
    ]
    assert events[0].payload["indexed"] == 1 and "quarantined_documents" not in events[0].payload


def test_failures_end_the_run_in_one_line_and_the_worker_goes_on(catalog: Catalog) -> None:
    sync = GatedSync()
    runs = queue(catalog, sync)
    broken = runs.request_sync("broken", "upload a.md")
    crash = runs.request_sync("crash", "upload b.md")
    fine = runs.request_sync("fine", "upload c.md")
    for _ in range(3):
        sync.release.release()

    assert finished(runs, broken.id).error == "cannot list /gone: not a directory"
    crashed = finished(runs, crash.id)
    assert crashed.state == "failed" and crashed.error is not None
    assert "secret detail" not in crashed.error and crash.id in crashed.error
    assert finished(runs, fine.id).state == "completed"


def test_close_interrupts_the_queued_runs_and_takes_no_new_one(catalog: Catalog) -> None:
    sync = GatedSync()
    runs = queue(catalog, sync)
    running = runs.request_sync("handbook", "upload a.md")
    sync.running.acquire()
    queued = runs.request_sync("policies", "upload b.md")

    closing = threading.Thread(target=runs.close)
    closing.start()
    while runs.get(queued.id).state != "interrupted":
        time.sleep(0.01)
    sync.release.release()
    closing.join()

    assert runs.get(running.id).state == "completed"
    assert "stopped before the run started" in (runs.get(queued.id).error or "")
    with pytest.raises(OdsError, match="shutting down"):
        runs.request_sync("handbook", "upload c.md")


def test_runs_outlive_their_queue_and_a_dead_servers_runs_are_interrupted(catalog: Catalog) -> None:
    sync = GatedSync()
    first = queue(catalog, sync)
    done = first.request_sync("handbook", "upload a.md")
    sync.release.release()
    finished(first, done.id)
    deploy = first.submit("deploy", "tiny@1", lambda: Stopped(message="ok"), "deploy tiny@1")
    finished(first, deploy.id)

    # Runs a server process left unfinished when it was killed: one of a process that is gone, one of
    # this very process under a queue that is no longer open (a restarted container is pid 1 again),
    # and one of a live process (another server on this catalog), which is left alone.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    host = first.owner.split(":")[0]
    owners = {
        "dead": f"{host}:{int(gone.stdout)}:0000dead",
        "reused-pid": f"{host}:{first.owner.split(':')[1]}:00000old",
        "live": first.owner,
    }
    left = {
        what: catalog.add_server_run(
            uuid.uuid4().hex,
            kind="ingest",
            state="running",
            owner=owner,
            requested_by=["upload b.md"],
            queued_at=datetime.now(UTC),
            started_at=datetime.now(UTC),
            knowledge_base="handbook",
        ).id
        for what, owner in owners.items()
    }
    restarted = queue(catalog, GatedSync())
    assert restarted.recover() == 2 and restarted.recover() == 0  # once per queue

    assert restarted.get(done.id).state == "completed" and restarted.get(done.id).result is not None
    assert restarted.get(deploy.id).result == {"message": "ok"}
    for what in ("dead", "reused-pid"):
        interrupted = restarted.get(left[what])
        assert interrupted.state == "interrupted" and interrupted.finished_at is not None
        assert (
            "the server stopped (killed or crashed) while this ingest of knowledge base 'handbook' was "
            "running; sync it again" in (interrupted.error or "")
        )
        assert "idempotent" in (interrupted.error or "")
    assert restarted.get(left["live"]).state == "running"
    assert {run.id for run in restarted.list(state="interrupted")} == {left["dead"], left["reused-pid"]}
    assert [run.id for run in restarted.list(kind="deploy")] == [deploy.id]


def test_unknown_runs_and_old_runs_forgotten(catalog: Catalog) -> None:
    sync = GatedSync()
    runs = queue(catalog, sync)
    old = runs.request_sync("kb", "upload")
    sync.release.release()
    finished(runs, old.id)
    catalog.prune_server_runs(datetime.now(UTC) + timedelta(seconds=1))

    with pytest.raises(NotFoundError, match="answered for 30 days after the run ended"):
        runs.get("0" * 32)
    with pytest.raises(NotFoundError):
        runs.get(old.id)


class Stopped(BaseModel):
    message: str


class FakeDeployments(PrefectDeployments):
    """A Prefect server as the run queue sees it: configured or not, with some deployments."""

    def __init__(self, *, configured: bool, deployed: set[str], reachable: bool = True) -> None:
        self._configured, self.deployed, self.reachable = configured, deployed, reachable
        self.started: list[tuple[str, dict[str, object]]] = []

    def configured(self) -> bool:
        return self._configured

    def exists(self, name: str) -> bool:
        if not self.reachable:
            raise SettingsError("cannot reach the Prefect API http://127.0.0.1:1/api: refused")
        return name in self.deployed

    def start(self, name: str, parameters: dict[str, Any], *, run_id: str, flow_run_name: str) -> str:
        self.started.append((name, parameters))
        return uuid.uuid4().hex


CALL = DeploymentCall("prepare-dataset/prepare-dataset", lambda: {"spec": "s3://b/spec.yaml"}, "prepare-x")


@pytest.mark.parametrize(
    ("mode", "prefect", "to_prefect"),
    [
        ("auto", FakeDeployments(configured=False, deployed=set()), False),
        ("auto", FakeDeployments(configured=True, deployed=set()), False),
        ("auto", FakeDeployments(configured=True, deployed={CALL.name}, reachable=False), False),
        ("auto", FakeDeployments(configured=True, deployed={CALL.name}), True),
        ("server", FakeDeployments(configured=True, deployed={CALL.name}), False),
        ("prefect", FakeDeployments(configured=True, deployed={CALL.name}), True),
    ],
    ids=["auto-no-prefect", "auto-not-deployed", "auto-unreachable", "auto-deployed", "server", "prefect"],
)
def test_where_a_run_goes(catalog: Catalog, mode: str, prefect: FakeDeployments, to_prefect: bool) -> None:
    runs = queue(catalog, GatedSync(), mode=mode, prefect=prefect)
    run = runs.submit("prepare", "x", lambda: Stopped(message="done here"), "register x", CALL)
    if to_prefect:
        assert prefect.started == [(CALL.name, {"spec": "s3://b/spec.yaml"})]
        assert run.prefect_flow_run_id is not None and run.state == "queued"
    else:
        assert prefect.started == [] and run.prefect_flow_run_id is None
        assert finished(runs, run.id).result == {"message": "done here"}


def test_prefect_mode_without_a_prefect_server_is_refused_with_the_fix(catalog: Catalog) -> None:
    runs = queue(
        catalog, GatedSync(), mode="prefect", prefect=FakeDeployments(configured=False, deployed=set())
    )
    with pytest.raises(
        SettingsError, match="ODS_API__RUNS=prefect but no Prefect server is configured: set "
    ):
        runs.submit("prepare", "x", lambda: Stopped(message="never"), "register x", CALL)
    assert catalog.list_server_runs() == []
