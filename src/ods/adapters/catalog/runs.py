"""Runs of `ods serve` (migration 0009): what the server started, kept so a run id outlives the process.

The server writes a row when a run is asked for and again when it starts and ends; ``GET /api/v1/runs``
reads the rows back. A server that starts finds the runs a dead process left queued or running
(:meth:`RunTables.unfinished_server_runs`) and ends them ``interrupted`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import CatalogBase, add_row, require_row, to_record
from ods.adapters.catalog.records import ServerRunRecord
from ods.adapters.catalog.schema import ServerRun, ServerRunKind, ServerRunState

UNFINISHED: tuple[ServerRunState, ...] = ("queued", "running")


class RunTables(CatalogBase):
    """``server_runs``."""

    def add_server_run(
        self,
        run_id: str,
        *,
        kind: ServerRunKind,
        state: ServerRunState,
        owner: str,
        requested_by: Sequence[str],
        queued_at: datetime,
        started_at: datetime | None = None,
        knowledge_base: str | None = None,
        target: str | None = None,
        prefect_flow_run_id: str | None = None,
        tenant: str | None = None,
    ) -> ServerRunRecord:
        """Record a run the server was asked for (``run_id``: 32 hex digits it made) for ``tenant`` (the
        catalog's tenant when None): its knowledge base or target is that tenant's."""

        def work(session: Session) -> ServerRunRecord:
            row = ServerRun(
                id=run_id,
                kind=kind,
                state=state,
                owner=owner,
                requested_by=list(requested_by),
                queued_at=queued_at,
                started_at=started_at,
                knowledge_base=knowledge_base,
                target=target,
                prefect_flow_run_id=prefect_flow_run_id,
                tenant=tenant or self.tenant,
            )
            return _run_record(add_row(session, row))

        return self._write(work)

    def add_server_run_request(self, run_id: str, reason: str) -> ServerRunRecord:
        """Add ``reason`` to what asked for the run (a request that joined it while it waited)."""

        def work(session: Session) -> ServerRunRecord:
            row = require_row(session, ServerRun, run_id, "run")
            row.requested_by = [*row.requested_by, reason]
            session.flush()
            return _run_record(row)

        return self._write(work)

    def start_server_run(self, run_id: str, started_at: datetime) -> ServerRunRecord:
        """Mark the run running from ``started_at``."""

        def work(session: Session) -> ServerRunRecord:
            row = require_row(session, ServerRun, run_id, "run")
            row.state, row.started_at = "running", started_at
            session.flush()
            return _run_record(row)

        return self._write(work)

    def finish_server_run(
        self,
        run_id: str,
        *,
        state: ServerRunState,
        finished_at: datetime,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> ServerRunRecord | None:
        """End the run in ``state`` with its result or one-line error, if it is still unfinished; None when
        it had already ended (e.g. a restarted server marked it interrupted meanwhile)."""

        def work(session: Session) -> ServerRunRecord | None:
            row = session.scalar(
                select(ServerRun)
                .where(ServerRun.id == run_id, ServerRun.state.in_(UNFINISHED))
                .with_for_update()
            )
            if row is None:
                return None
            row.state, row.finished_at, row.result, row.error = state, finished_at, result, error
            session.flush()
            return _run_record(row)

        return self._write(work)

    def get_server_run(self, run_id: str) -> ServerRunRecord:
        """The run ``run_id``; NotFoundError when there is none."""
        return self._read(lambda session: _run_record(require_row(session, ServerRun, run_id, "run")))

    def list_server_runs(
        self,
        *,
        kind: ServerRunKind | None = None,
        state: ServerRunState | None = None,
        target: str | None = None,
        limit: int = 50,
        tenant: str | None = None,
    ) -> list[ServerRunRecord]:
        """The newest ``limit`` runs (of ``tenant`` when given, of ``kind``, in ``state``, on ``target`` or
        knowledge base), newest first."""
        query = select(ServerRun)
        if tenant is not None:
            query = query.where(ServerRun.tenant == tenant)
        if kind is not None:
            query = query.where(ServerRun.kind == kind)
        if state is not None:
            query = query.where(ServerRun.state == state)
        if target is not None:
            query = query.where((ServerRun.target == target) | (ServerRun.knowledge_base == target))
        query = query.order_by(ServerRun.queued_at.desc(), ServerRun.id).limit(limit)
        return self._read(lambda session: [_run_record(row) for row in session.scalars(query)])

    def unfinished_server_runs(self) -> list[ServerRunRecord]:
        """Every queued or running run the server runs itself (not those a Prefect flow run does)."""
        query = select(ServerRun).where(
            ServerRun.state.in_(UNFINISHED), ServerRun.prefect_flow_run_id.is_(None)
        )
        return self._read(
            lambda session: [_run_record(row) for row in session.scalars(query.order_by(ServerRun.queued_at))]
        )

    def prune_server_runs(self, before: datetime) -> int:
        """Delete the runs that ended before ``before``; returns how many."""

        def work(session: Session) -> int:
            ids = list(
                session.scalars(
                    select(ServerRun.id).where(
                        ServerRun.finished_at.is_not(None), ServerRun.finished_at < before
                    )
                )
            )
            if ids:
                session.execute(delete(ServerRun).where(ServerRun.id.in_(ids)))
            return len(ids)

        return self._write(work)


def _run_record(row: ServerRun) -> ServerRunRecord:
    result = None if row.result is None else dict(row.result)
    return to_record(ServerRunRecord, row, requested_by=tuple(row.requested_by), result=result)
