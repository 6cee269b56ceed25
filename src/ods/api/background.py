"""The work the server starts and answers for later: ingest runs of knowledge bases, kept in memory.

An upload or a document delete changes a knowledge base's source in the object store, then asks for the
knowledge base to be synced with it. The sync runs in the server's own process, on the catalog, index and
embedder the server keeps open (:class:`~ods.api.resources.Resources`): a Milvus Lite file is held by one
process, so a separate ``ods kb ingest`` could not open it while the server runs. It runs the ingest
stages the ingest-documents flow's tasks run (plan, prepare, embed, index, delete), batch by batch.

One worker thread takes the runs in turn, so no two ingests of a knowledge base ever overlap. A sync asked
for while one of the same knowledge base waits to start joins it (same run id): the waiting run lists the
source when it starts, so it sees both changes. One asked for while the knowledge base's sync is running
waits for it, since that run may have listed the source before the change.

Runs are kept in memory (the last ``KEPT_RUNS``): they do not survive a restart of the server. A run a
restart interrupted leaves nothing half-written that the next sync does not finish (see
``ods.stages.ingest``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import BaseModel

from ods.adapters.workers.parse_pool import shared_parser_pool
from ods.api.resources import Resources
from ods.domain.sync_plan import pipeline_batches
from ods.errors import NotFoundError, OdsError
from ods.factories import build_object_store, open_source
from ods.stages.ingest import (
    BatchReport,
    DocumentLimits,
    IngestSummary,
    delete_documents,
    embed_batch,
    index_batch,
    plan_ingest,
    prepare_batch,
    retire_replaced_versions,
    summarize_ingest,
)

logger = logging.getLogger(__name__)

RunState = Literal["queued", "running", "completed", "failed"]
RunKind = Literal["ingest", "deploy", "undeploy", "prepare"]
KEPT_RUNS = 1000
SERVER_BATCH_DOCUMENTS = 8
"""Documents per batch of a server-side ingest: a batch holds the model lock while it is parsed and chunked,
and again while it is embedded, so searches and answers wait for one step of one small batch at most."""


@dataclass(frozen=True)
class BackgroundRun:
    """One run the server started, as it stands."""

    id: str
    kind: RunKind
    knowledge_base: str | None
    state: RunState
    requested_by: tuple[str, ...]
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: BaseModel | None = None
    error: str | None = None
    target: str | None = None
    """What a run other than an ingest works on (a model ``NAME@VERSION`` for deploy and undeploy, a
    dataset name for prepare)."""

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far, while running)."""
        if self.started_at is None:
            return None
        return round(((self.finished_at or _now()) - self.started_at).total_seconds(), 3)


@dataclass
class _Queue:
    pending: deque[str] = field(default_factory=deque)
    closed: bool = False


class BackgroundRuns:
    """The server's runs: queued, run one at a time by one worker thread, looked up by id."""

    def __init__(self, sync: Callable[[str], IngestSummary], *, kept_runs: int = KEPT_RUNS) -> None:
        self._sync = sync
        self._kept_runs = kept_runs
        self._runs: OrderedDict[str, BackgroundRun] = OrderedDict()
        self._queue = _Queue()
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        self._jobs: list[threading.Thread] = []

    def request_sync(self, kb: str, reason: str) -> BackgroundRun:
        """A run that syncs ``kb`` with its source after this call: the one waiting to start, or a new one."""
        with self._changed:
            if self._queue.closed:
                raise OdsError("the server is shutting down and starts no new run; try again once it is back")
            for run_id in self._queue.pending:
                run = self._runs[run_id]
                if run.knowledge_base == kb:
                    run = replace(run, requested_by=(*run.requested_by, reason))
                    self._runs[run_id] = run
                    return run
            run = BackgroundRun(
                id=uuid.uuid4().hex,
                kind="ingest",
                knowledge_base=kb,
                state="queued",
                requested_by=(reason,),
                queued_at=_now(),
            )
            self._runs[run.id] = run
            self._forget_old_runs()
            self._queue.pending.append(run.id)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="ods-api-runs", daemon=True)
                self._worker.start()
            self._changed.notify_all()
            return run

    def submit(self, kind: RunKind, target: str, work: Callable[[], BaseModel], reason: str) -> BackgroundRun:
        """Start ``work`` now in a thread of its own (a deploy waits minutes for its server; it must not
        hold up the ingest queue) and return its run; ``work``'s result or one-line error ends it."""
        with self._changed:
            if self._queue.closed:
                raise OdsError("the server is shutting down and starts no new run; try again once it is back")
            run = BackgroundRun(
                id=uuid.uuid4().hex,
                kind=kind,
                knowledge_base=None,
                state="running",
                requested_by=(reason,),
                queued_at=_now(),
                started_at=_now(),
                target=target,
            )
            self._runs[run.id] = run
            self._forget_old_runs()
            job = threading.Thread(
                target=self._run_job, args=(run, work), name=f"ods-api-{kind}", daemon=True
            )
            self._jobs = [*(alive for alive in self._jobs if alive.is_alive()), job]
            job.start()
            return run

    def _run_job(self, run: BackgroundRun, work: Callable[[], BaseModel]) -> None:
        try:
            result = work()
        except Exception as error:  # noqa: BLE001 - every failure ends the run as failed, never the server
            finished = replace(run, state="failed", finished_at=_now(), error=_one_line(run, error))
        else:
            finished = replace(run, state="completed", finished_at=_now(), result=result)
        with self._changed:
            self._runs[run.id] = finished

    def get(self, run_id: str) -> BackgroundRun:
        """The run ``run_id`` as it stands now."""
        with self._changed:
            run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(
                f"no run {run_id!r}; runs are kept in this server's memory (the last {self._kept_runs:,}) "
                "and do not survive a restart"
            )
        return run

    def close(self, timeout_s: float = 300.0) -> None:
        """Start no new run, fail the queued ones, and wait (up to ``timeout_s``) for the running one."""
        with self._changed:
            self._queue.closed = True
            for run_id in self._queue.pending:
                self._runs[run_id] = replace(
                    self._runs[run_id],
                    state="failed",
                    finished_at=_now(),
                    error="the server stopped before the run started; upload again or run ods kb ingest",
                )
            self._queue.pending.clear()
            self._changed.notify_all()
            worker = self._worker
            jobs = list(self._jobs)
        for thread in [*jobs, *([worker] if worker is not None else [])]:
            thread.join(timeout=timeout_s)

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._queue.pending and not self._queue.closed:
                    self._changed.wait()
                if not self._queue.pending:
                    return
                run_id = self._queue.pending.popleft()
                run = self._runs[run_id] = replace(self._runs[run_id], state="running", started_at=_now())
            try:
                assert run.knowledge_base is not None  # only ingests are queued
                summary = self._sync(run.knowledge_base)
            except Exception as error:  # noqa: BLE001 - every failure ends the run as failed, never the worker
                finished = replace(run, state="failed", finished_at=_now(), error=_one_line(run, error))
            else:
                finished = replace(run, state="completed", finished_at=_now(), result=summary)
            with self._changed:
                self._runs[run_id] = finished

    def _forget_old_runs(self) -> None:
        """Drop the oldest finished runs past ``kept_runs`` (queued and running ones are always kept)."""
        excess = len(self._runs) - self._kept_runs
        for run_id in [key for key, run in self._runs.items() if run.finished_at is not None][
            : max(excess, 0)
        ]:
            del self._runs[run_id]


def _one_line(run: BackgroundRun, error: Exception) -> str:
    if isinstance(error, OdsError):
        return " ".join(str(error).split()) or type(error).__name__
    subject = run.knowledge_base or run.target
    logger.error("run %s (%s of %s) failed", run.id, run.kind, subject, exc_info=error)
    return f"unexpected {type(error).__name__}; the server log holds the details under run {run.id}"


def _now() -> datetime:
    return datetime.now(UTC)


def sync_knowledge_base(resources: Resources, kb: str) -> IngestSummary:
    """Bring ``kb`` in line with the source the catalog records for it, on the server's open catalog,
    index and embedder: the ingest stages the ingest-documents flow runs, batch by batch."""
    settings, catalog = resources.settings, resources.catalog
    record = catalog.get_knowledge_base(kb)
    if record.source_uri is None:
        raise OdsError(f"knowledge base {kb!r} has no source recorded; ingest it once with ods kb ingest")
    _recreate_store_folder(resources, record.source_uri)
    source = open_source(settings, record.source_uri)
    limits = DocumentLimits.from_settings(settings.ingest)
    plan = plan_ingest(catalog, kb, source, limits)
    index = resources.index(record)
    reports: list[BatchReport] = []
    pool = shared_parser_pool()
    for batch in pipeline_batches(plan.to_read, SERVER_BATCH_DOCUMENTS):
        embedder = resources.embedder
        # The tokenizer counts the chunks' tokens, then the model embeds them: the lock is taken for each
        # in turn, so a search waits for one step of one batch, not the whole batch.
        with resources.model_lock:
            prepared = prepare_batch(
                catalog=catalog,
                embedder=embedder,
                pool=pool,
                source=source,
                kb=kb,
                documents=batch,
                limits=limits,
            )
        with resources.model_lock:
            embedded = embed_batch(prepared, embedder)
        reports.append(index_batch(catalog=catalog, index=index, kb=kb, prepared=embedded))
    retired = retire_replaced_versions(catalog, index, kb)
    deleted = delete_documents(catalog, index, kb, plan.to_delete)
    if retired or deleted or any(report.indexed for report in reports):
        index.write_search_snapshot()  # flushes; exact dense search on a Milvus Lite file again
    return summarize_ingest(kb, record.source_uri, len(plan.unchanged), reports, deleted)


def _recreate_store_folder(resources: Resources, source_uri: str) -> None:
    """The local object store removes a folder with its last object; a knowledge base whose documents all
    were deleted still has its (empty) source folder, so the sync deletes their chunks instead of failing."""
    store = build_object_store(resources.settings)
    root = getattr(store, "root", None)
    if store.kind != "local" or not isinstance(root, Path) or source_uri.startswith("s3://"):
        return
    folder = Path(source_uri).resolve()
    if folder.is_relative_to(root) and folder != root:
        folder.mkdir(parents=True, exist_ok=True)


def background_runs(request: Request) -> BackgroundRuns:
    """The runs of the app serving ``request`` (``create_app`` makes them)."""
    runs: BackgroundRuns = request.app.state.runs
    return runs


ServerRuns = Annotated[BackgroundRuns, Depends(background_runs)]
