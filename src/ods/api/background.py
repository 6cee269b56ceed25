"""The work the server starts and answers for later: ingests of knowledge bases, dataset prepares, deploys
and undeploys, kept in the catalog so a run id outlives the server process.

An upload or a document delete changes a knowledge base's source in the object store, then asks for the
knowledge base to be synced with it. The sync runs in the server's own process, on the catalog, index and
embedder the server keeps open (:class:`~ods.api.resources.Resources`): a Milvus Lite file is held by one
process, so a separate ``ods kb ingest`` could not open it while the server runs. It runs the ingest
stages the ingest-documents flow's tasks run (plan, prepare, embed, index, delete), batch by batch.

One worker thread takes the ingests in turn, so no two ingests of a knowledge base ever overlap. A sync
asked for while one of the same knowledge base waits to start joins it (same run id): the waiting run
lists the source when it starts, so it sees both changes. One asked for while the knowledge base's sync
is running waits for it, since that run may have listed the source before the change.

A prepare, a deploy or an undeploy runs in a thread of its own, or, with a Prefect server configured and
prefect.yaml deployed (``ODS_API__RUNS``), as a flow run of its deployment (:mod:`ods.api.prefect_runs`):
the run then holds the flow run's id and its state is read from Prefect.

Every run is a row of the catalog (``server_runs``, migration 0009), written when it is asked for, starts
and ends. A server killed mid-run leaves its runs queued or running there; the next server to start on
this host marks them ``interrupted`` with what to do, since the process that would end them is gone
(``owner`` names it, ``host:pid``). The runs' own writes are idempotent (``ods.stages.ingest``,
``ods.stages.prepare``): doing the work again finishes what the interrupted run left.

The runs emit the Prefect events their flows' tasks emit (:mod:`ods.api.run_events`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict

from ods.adapters.catalog import RunCatalog, ServerRunRecord
from ods.adapters.workers.parse_pool import shared_parser_pool
from ods.adapters.workers.processes import pid_exists
from ods.api.prefect_runs import PrefectDeployments
from ods.api.resources import Resources
from ods.api.run_events import RunEvent, RunEventEmitter, emit_quietly, kb_updated_event
from ods.domain.identity import DEFAULT_TENANT
from ods.domain.sync_plan import pipeline_batches
from ods.errors import NotFoundError, OdsError, SettingsError
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

RunState = Literal["queued", "running", "completed", "failed", "interrupted"]
RunKind = Literal["ingest", "deploy", "undeploy", "prepare"]
RunsMode = Literal["auto", "server", "prefect"]
KEPT_RUNS_DAYS = 30
"""Finished runs older than this are deleted when a server starts."""
SERVER_BATCH_DOCUMENTS = 8
"""Documents per batch of a server-side ingest: a batch holds the model lock while it is parsed and chunked,
and again while it is embedded, so searches and answers wait for one step of one small batch at most."""

_WHAT_TO_DO: dict[str, str] = {
    "ingest": "sync it again (upload the document again, or run `ods kb ingest`): ingest is idempotent and "
    "finishes what this run left",
    "prepare": "register the dataset again (the same spec and source): a re-run finds or makes the same "
    "version",
    "deploy": "check GET /api/v1/models/{name}/status and deploy again: a deploy that finds the version "
    "served reuses it",
    "undeploy": "undeploy again: stopping an endpoint already stopped is a no-op",
}
_LIVE_OWNERS: set[str] = set()
"""The owners of this process's open run queues: a run one of them holds is never taken for a dead
server's, though its pid is this process's."""


class BackgroundRun(BaseModel):
    """One run the server started, as it stands (its catalog row's fields, by name, and Prefect's state)."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: RunKind
    knowledge_base: str | None
    state: RunState
    requested_by: tuple[str, ...]
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    target: str | None = None
    """What a run other than an ingest works on (a model ``NAME@VERSION`` for deploy and undeploy, a
    dataset name for prepare)."""
    prefect_flow_run_id: str | None = None
    """The Prefect flow run doing the work, when the run started a deployment instead of running here."""
    tenant: str = DEFAULT_TENANT
    """The tenant the run works for: its knowledge base or target is that tenant's."""
    prefect_state: str | None = None
    """That flow run's state name in Prefect (Scheduled, Pending, Running, Completed, Failed, …)."""

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far, while running)."""
        if self.started_at is None:
            return None
        return round(((self.finished_at or _now()) - self.started_at).total_seconds(), 3)


@dataclass(frozen=True)
class DeploymentCall:
    """The Prefect deployment that does a run's work when runs go to Prefect, and its parameters (made
    only then: a prepare stores its spec in the object store for the worker to read)."""

    name: str
    """``flow/deployment`` as prefect.yaml names it, e.g. ``prepare-dataset/prepare-dataset``."""
    parameters: Callable[[], dict[str, Any]]
    flow_run_name: str


class BackgroundRuns:
    """The server's runs: recorded in the catalog, ingests run one at a time by one worker thread, the
    others each in a thread or as a Prefect flow run; looked up by id."""

    def __init__(
        self,
        catalog: Callable[[], RunCatalog],
        sync: Callable[[str, str], IngestSummary],
        *,
        mode: RunsMode = "server",
        emit: RunEventEmitter | None = None,
        prefect: PrefectDeployments | None = None,
    ) -> None:
        self._catalog = catalog
        self._sync = sync
        self._mode: RunsMode = mode
        self.emit: RunEventEmitter = emit or _drop
        """Where the runs' Prefect events go (call sites emit their kind's events through it)."""
        self._prefect = prefect or PrefectDeployments()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(self.owner)
        self._pending: deque[str] = deque()
        self._pending_kb: dict[tuple[str, str], str] = {}
        """The run waiting to start for each (tenant, knowledge base)."""
        self._closed = False
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        self._jobs: list[threading.Thread] = []
        self._recovered = False
        self._recover_lock = threading.Lock()

    # -- asking for runs -----------------------------------------------------------------------------

    def request_sync(self, kb: str, reason: str, tenant: str = DEFAULT_TENANT) -> BackgroundRun:
        """A run that syncs ``tenant``'s ``kb`` with its source after this call: the one waiting to start,
        or a new one."""
        catalog = self._ready_catalog()
        with self._changed:
            self._refuse_when_closed()
            run_id = self._pending_kb.get((tenant, kb))
            if run_id is not None:
                return _run_of(catalog.add_server_run_request(run_id, reason))
            record = catalog.add_server_run(
                uuid.uuid4().hex,
                kind="ingest",
                state="queued",
                owner=self.owner,
                requested_by=[reason],
                queued_at=_now(),
                knowledge_base=kb,
                tenant=tenant,
            )
            self._pending.append(record.id)
            self._pending_kb[(tenant, kb)] = record.id
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="ods-api-runs", daemon=True)
                self._worker.start()
            self._changed.notify_all()
            return _run_of(record)

    def submit(
        self,
        kind: RunKind,
        target: str,
        work: Callable[[], BaseModel],
        reason: str,
        deployment: DeploymentCall | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> BackgroundRun:
        """Start the run: as a flow run of ``deployment`` when runs go to Prefect (``ODS_API__RUNS``), else
        ``work`` now in a thread of its own (a deploy waits minutes for its server; it must not hold up the
        ingest queue); ``work``'s result or one-line error ends it. A run of a tenant other than the default
        one always runs here: the deployments' flows act in their worker's ``ODS_TENANT``."""
        catalog = self._ready_catalog()
        with self._changed:
            self._refuse_when_closed()
        run_id = uuid.uuid4().hex
        # A deployment's flow opens the catalog of its worker's ODS_TENANT: another tenant's run is done here.
        call = self._deployment_to_start(deployment if tenant == DEFAULT_TENANT else None)
        flow_run_id = None
        if call is not None:
            flow_run_id = self._prefect.start(
                call.name, call.parameters(), run_id=run_id, flow_run_name=call.flow_run_name
            )
        now = _now()
        here = flow_run_id is None  # else a worker of the deployment's pool runs it
        record = catalog.add_server_run(
            run_id,
            kind=kind,
            state="running" if here else "queued",
            owner=self.owner,
            requested_by=[reason],
            queued_at=now,
            started_at=now if here else None,
            target=target,
            prefect_flow_run_id=flow_run_id,
            tenant=tenant,
        )
        if not here:
            return _run_of(record, prefect_state="Scheduled")
        job = threading.Thread(target=self._run_job, args=(record, work), name=f"ods-api-{kind}", daemon=True)
        with self._changed:
            closing = self._closed  # closed while the row was written: close() would not wait for it
            if not closing:
                self._jobs = [*(alive for alive in self._jobs if alive.is_alive()), job]
                job.start()
        if closing:
            self._finish(record.id, state="interrupted", error="the server stopped before the run started")
            self._refuse_when_closed()
        return _run_of(record)

    def _deployment_to_start(self, deployment: DeploymentCall | None) -> DeploymentCall | None:
        """``deployment`` when this run goes to Prefect, None when it runs here; raises when ``prefect``
        mode cannot start it."""
        if deployment is None or self._mode == "server":
            return None
        if self._mode == "prefect":
            if not self._prefect.configured():
                raise SettingsError(
                    "ODS_API__RUNS=prefect but no Prefect server is configured: set PREFECT_API_URL, or "
                    "ODS_API__RUNS=auto or server to run it in `ods serve`"
                )
            return deployment  # a missing deployment is refused by start(), naming `prefect deploy --all`
        if not self._prefect.configured():
            return None
        try:
            found = self._prefect.exists(deployment.name)
        except OdsError as error:
            logger.warning("%s; running %s in the server instead", error, deployment.flow_run_name)
            return None
        if not found:
            logger.warning(
                "no deployment %r on the Prefect server (prefect deploy --all): running %s in the server",
                deployment.name,
                deployment.flow_run_name,
            )
            return None
        return deployment

    # -- reading runs --------------------------------------------------------------------------------

    def get(self, run_id: str) -> BackgroundRun:
        """The run ``run_id`` as it stands now (a Prefect run's state read from Prefect)."""
        try:
            record = self._ready_catalog().get_server_run(run_id)
        except NotFoundError:
            raise NotFoundError(
                f"no run {run_id!r}: run ids are answered for {KEPT_RUNS_DAYS} days after the run ended"
            ) from None
        return self._current(record, strict=True)

    def list(
        self,
        *,
        kind: RunKind | None = None,
        state: RunState | None = None,
        target: str | None = None,
        limit: int = 50,
        tenant: str | None = None,
    ) -> list[BackgroundRun]:
        """The newest ``limit`` runs (of ``tenant`` when given), newest first (Prefect runs as Prefect has
        them, when it answers)."""
        records = self._ready_catalog().list_server_runs(
            kind=kind, state=state, target=target, limit=limit, tenant=tenant
        )
        return [self._current(record, strict=False) for record in records]

    def _current(self, record: ServerRunRecord, *, strict: bool) -> BackgroundRun:
        """``record``, with a Prefect flow run's state read from Prefect (and kept once it is final)."""
        if record.prefect_flow_run_id is None:
            return _run_of(record)
        try:
            flow_run = self._prefect.state(record.prefect_flow_run_id)
        except OdsError:
            if strict and record.finished_at is None:
                raise
            return _run_of(record)
        if flow_run.state in ("completed", "failed") and record.finished_at is None:
            self._ready_catalog().finish_server_run(
                record.id,
                state=flow_run.state,
                finished_at=flow_run.finished_at or _now(),
                error=flow_run.message if flow_run.state == "failed" else None,
            )
        return _run_of(record).model_copy(
            update={
                "state": flow_run.state,
                "started_at": flow_run.started_at,
                "finished_at": flow_run.finished_at,
                "error": flow_run.message if flow_run.state == "failed" else None,
                "prefect_state": flow_run.prefect_state,
            }
        )

    # -- the server's life ---------------------------------------------------------------------------

    def recover(self) -> int:
        """Mark interrupted the runs a server process on this host left queued or running when it died,
        and delete runs that ended more than KEPT_RUNS_DAYS ago; once per queue (the first use calls it).
        Returns how many runs were marked."""
        with self._recover_lock:
            if self._recovered:
                return 0
            catalog = self._catalog()
            now = _now()
            catalog.prune_server_runs(now - timedelta(days=KEPT_RUNS_DAYS))
            marked = 0
            for record in catalog.unfinished_server_runs():
                if _left_by_a_dead_server(record.owner):
                    ended = catalog.finish_server_run(
                        record.id, state="interrupted", finished_at=now, error=_interrupted(record)
                    )
                    marked += ended is not None
            if marked:
                logger.warning("marked %d run(s) a stopped server left unfinished as interrupted", marked)
            self._recovered = True
            return marked

    def close(self, timeout_s: float = 300.0) -> None:
        """Start no new run, end the queued ones interrupted, and wait (up to ``timeout_s``) for the running
        ones."""
        with self._changed:
            self._closed = True
            pending = list(self._pending)
            self._pending.clear()
            self._pending_kb.clear()
            self._changed.notify_all()
            worker = self._worker
            jobs = list(self._jobs)
        for run_id in pending:
            self._finish(
                run_id,
                state="interrupted",
                error="the server stopped before the run started; upload again or run `ods kb ingest` "
                "(ingest is idempotent)",
            )
        for thread in [*jobs, *([worker] if worker is not None else [])]:
            thread.join(timeout=timeout_s)
        _LIVE_OWNERS.discard(self.owner)

    def _ready_catalog(self) -> RunCatalog:
        self.recover()
        return self._catalog()

    def _refuse_when_closed(self) -> None:
        if self._closed:
            raise OdsError("the server is shutting down and starts no new run; try again once it is back")

    # -- running -------------------------------------------------------------------------------------

    def _run_job(self, record: ServerRunRecord, work: Callable[[], BaseModel]) -> None:
        try:
            result = work()
        except Exception as error:  # noqa: BLE001 - every failure ends the run as failed, never the server
            self._finish(record.id, state="failed", error=_one_line(record, error))
        else:
            self._finish(record.id, state="completed", result=result.model_dump(mode="json"))

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if not self._pending:
                    return
                run_id = self._pending.popleft()
                tenant, kb = next(key for key, pending in self._pending_kb.items() if pending == run_id)
                del self._pending_kb[(tenant, kb)]
            try:
                self._catalog().start_server_run(run_id, _now())
                summary = self._sync(kb, tenant)
            except Exception as error:  # noqa: BLE001 - every failure ends the run as failed, never the worker
                self._finish(run_id, state="failed", error=_one_line(run_id, error, "ingest", kb))
            else:
                # Emitted before the run reads completed, as the flow's report task emits before its flow
                # ends: whoever sees the run completed can rely on its event having been sent.
                emit_quietly(self.emit, kb_updated_event(summary))
                self._finish(run_id, state="completed", result=summary.model_dump(mode="json"))

    def _finish(
        self, run_id: str, *, state: RunState, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        try:
            self._catalog().finish_server_run(
                run_id, state=state, finished_at=_now(), result=result, error=error
            )
        except Exception:  # a catalog gone down: the next server marks the run interrupted
            logger.exception("could not record the end (%s) of run %s", state, run_id)


def recover_runs(runs: BackgroundRuns) -> None:
    """:meth:`BackgroundRuns.recover` as the server starts, so the runs a killed server left show
    interrupted at once; a catalog that does not answer yet is logged, and the first use recovers."""
    try:
        runs.recover()
    except OdsError as error:
        logger.warning("could not look for runs a stopped server left unfinished: %s", error)


def _drop(event: RunEvent) -> None:
    """No emitter: the event goes nowhere."""


def _run_of(record: ServerRunRecord, *, prefect_state: str | None = None) -> BackgroundRun:
    run = BackgroundRun.model_validate(record, from_attributes=True)  # kind and state: the table's CHECKs
    return run if prefect_state is None else run.model_copy(update={"prefect_state": prefect_state})


def _left_by_a_dead_server(owner: str) -> bool:
    """Whether the server process ``owner`` (``host:pid:instance``) is gone: on this host, its pid is no
    process, or is this one (a restarted container is pid 1 again) with no open queue of that name.
    A run of a server on another host is left alone: this host cannot tell whether it still runs."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _LIVE_OWNERS
    return not pid_exists(pid)


def _interrupted(record: ServerRunRecord) -> str:
    subject = f"knowledge base {record.knowledge_base!r}" if record.kind == "ingest" else record.target
    todo = _WHAT_TO_DO[record.kind].replace("{name}", (record.target or "").split("@")[0])
    return (
        f"interrupted: the server stopped (killed or crashed) while this {record.kind} of {subject} was "
        f"{record.state}; {todo}"
    )


def _one_line(
    run: ServerRunRecord | str, error: Exception, kind: str | None = None, subject: str | None = None
) -> str:
    if isinstance(error, OdsError):
        return " ".join(str(error).split()) or type(error).__name__
    if isinstance(run, ServerRunRecord):
        run_id, kind, subject = run.id, run.kind, run.knowledge_base or run.target
    else:
        run_id = run
    logger.error("run %s (%s of %s) failed", run_id, kind, subject, exc_info=error)
    return f"unexpected {type(error).__name__}; the server log holds the details under run {run_id}"


def _now() -> datetime:
    return datetime.now(UTC)


def sync_knowledge_base(resources: Resources, kb: str, tenant: str = DEFAULT_TENANT) -> IngestSummary:
    """Bring ``tenant``'s ``kb`` in line with the source the catalog records for it, on the server's open
    catalog, index and embedder: the ingest stages the ingest-documents flow runs, batch by batch."""
    settings, catalog = resources.settings, resources.catalog.for_tenant(tenant)
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
