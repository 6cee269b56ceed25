"""The server's run queue: one run at a time, a sync asked for while one waits joins it, failures in one
line, and a shutdown that fails what never started. The sync is a fake injected through the constructor."""

from __future__ import annotations

import threading
import time

import pytest

from ods.api.background import BackgroundRun, BackgroundRuns
from ods.errors import NotFoundError, OdsError
from ods.stages.ingest import IngestSummary


class GatedSync:
    """Syncs that wait for ``release`` before finishing, recording the order they ran in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.overlapping = 0
        self._active = 0
        self._lock = threading.Lock()

    def __call__(self, kb: str) -> IngestSummary:
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


def test_a_sync_asked_for_while_one_waits_joins_it_and_runs_never_overlap() -> None:
    sync = GatedSync()
    runs = BackgroundRuns(sync)

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
    assert done[0].result is not None and done[0].result.indexed == 1
    assert done[0].seconds is not None and done[0].seconds >= 0


def test_failures_end_the_run_in_one_line_and_the_worker_goes_on() -> None:
    sync = GatedSync()
    runs = BackgroundRuns(sync)
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


def test_close_fails_the_queued_runs_and_takes_no_new_one() -> None:
    sync = GatedSync()
    runs = BackgroundRuns(sync)
    running = runs.request_sync("handbook", "upload a.md")
    sync.running.acquire()
    queued = runs.request_sync("policies", "upload b.md")

    closing = threading.Thread(target=runs.close)
    closing.start()
    while runs.get(queued.id).state != "failed":
        time.sleep(0.01)
    sync.release.release()
    closing.join()

    assert runs.get(running.id).state == "completed"
    assert "stopped before the run started" in (runs.get(queued.id).error or "")
    with pytest.raises(OdsError, match="shutting down"):
        runs.request_sync("handbook", "upload c.md")


def test_unknown_runs_and_old_runs_forgotten() -> None:
    sync = GatedSync()
    runs = BackgroundRuns(sync, kept_runs=2)
    ids = []
    for number in range(4):
        ids.append(runs.request_sync(f"kb{number}", "upload").id)
        sync.release.release()
        finished(runs, ids[-1])

    with pytest.raises(NotFoundError, match="do not survive a restart"):
        runs.get("0" * 32)
    with pytest.raises(NotFoundError):
        runs.get(ids[0])
    assert runs.get(ids[-1]).state == "completed"
