"""The audit log of `ods serve` (migration 0011): append-only rows of who did what, when, and how it ended.

The server appends rows in batches (:meth:`AuditTables.append_audit_entries`); ``GET /api/v1/audit`` and
`ods audit list` read them back newest first (:meth:`AuditTables.list_audit_entries`); the server prunes
rows older than ODS_AUDIT__RETENTION_DAYS when it starts. Nothing else changes a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import CatalogBase, to_record, values_of
from ods.adapters.catalog.schema import AuditEntry, AuditOutcome


@dataclass(frozen=True)
class AuditEntryRecord:
    """One audit row; ``id`` is 0 for an entry not yet written."""

    at: datetime
    tenant: str | None
    subject: str | None
    roles: tuple[str, ...]
    action: str
    resource: str
    outcome: AuditOutcome
    status_code: int | None = None
    request_id: str | None = None
    client: str | None = None
    detail: str | None = None
    id: int = 0


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows to read: each field set narrows the rows (``resource``: a prefix)."""

    since: datetime | None = None
    until: datetime | None = None
    tenant: str | None = None
    subject: str | None = None
    action: str | None = None
    outcome: AuditOutcome | None = None
    resource: str | None = None


class AuditCatalog(Protocol):
    """The audit log of `ods serve` (``ods.api.audit``, ``/api/v1/audit``, `ods audit list`)."""

    def append_audit_entries(self, entries: Sequence[AuditEntryRecord]) -> int: ...

    def list_audit_entries(
        self, where: AuditFilter, *, limit: int = 50, offset: int = 0
    ) -> list[AuditEntryRecord]: ...

    def prune_audit_entries(self, before: datetime) -> int: ...


class AuditTables(CatalogBase):
    """``audit_log``."""

    def append_audit_entries(self, entries: Sequence[AuditEntryRecord]) -> int:
        """Append ``entries`` in one transaction; returns how many."""
        if not entries:
            return 0
        rows = [_audit_row(entry) for entry in entries]

        def work(session: Session) -> int:
            session.execute(insert(AuditEntry), rows)
            return len(rows)

        return self._write(work)

    def list_audit_entries(
        self, where: AuditFilter, *, limit: int = 50, offset: int = 0
    ) -> list[AuditEntryRecord]:
        """The rows ``where`` selects, newest first, ``limit`` of them after skipping ``offset``."""
        query = select(AuditEntry)
        if where.since is not None:
            query = query.where(AuditEntry.at >= where.since)
        if where.until is not None:
            query = query.where(AuditEntry.at < where.until)
        if where.tenant is not None:
            query = query.where(AuditEntry.tenant == where.tenant)
        if where.subject is not None:
            query = query.where(AuditEntry.subject == where.subject)
        if where.action is not None:
            query = query.where(AuditEntry.action == where.action)
        if where.outcome is not None:
            query = query.where(AuditEntry.outcome == where.outcome)
        if where.resource is not None:
            query = query.where(AuditEntry.resource.startswith(where.resource, autoescape=True))
        query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).offset(offset).limit(limit)
        return self._read(lambda session: [_audit_record(row) for row in session.scalars(query)])

    def prune_audit_entries(self, before: datetime) -> int:
        """Delete the rows written before ``before`` (the retention pruning); returns how many."""

        def work(session: Session) -> int:
            result = session.execute(delete(AuditEntry).where(AuditEntry.at < before))
            return int(getattr(result, "rowcount", 0) or 0)

        return self._write(work)


def _audit_row(entry: AuditEntryRecord) -> dict[str, Any]:
    """The column values of a new row: the entry's fields but its id (the table numbers its rows)."""
    values = values_of(entry) | {"roles": list(entry.roles)}
    del values["id"]
    return values


def _audit_record(row: AuditEntry) -> AuditEntryRecord:
    return to_record(AuditEntryRecord, row, roles=tuple(row.roles))
