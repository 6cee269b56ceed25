"""The audit log's stage functions: read it (``GET /api/v1/audit``, `ods audit list`) and prune it to
ODS_AUDIT__RETENTION_DAYS (`ods serve` at start). ``ods.api.audit`` writes it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from ods.adapters.catalog.audit import AuditCatalog, AuditEntryRecord, AuditFilter
from ods.adapters.catalog.schema import utcnow
from ods.errors import OdsError

logger = logging.getLogger(__name__)

MAX_PAGE: Final = 500
_AGO = re.compile(r"(\d{1,6})([mhd])")
_UNITS: Final = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
SINCE_RULE: Final = "an ISO time (2026-12-01 or 2026-12-01T08:00:00Z) or an age such as 90m, 12h, 7d"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The moment ``text`` names: an ISO date or time (UTC when it names no zone) or an age before ``now``
    (``90m``, ``12h``, ``7d``); OdsError naming it otherwise."""
    cleaned = text.strip().lower()
    ago = _AGO.fullmatch(cleaned)
    if ago:
        return (now or utcnow()) - int(ago.group(1)) * _UNITS[ago.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "…"
        raise OdsError(f"--since {shown} is not a time: use {SINCE_RULE}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class AuditSlice:
    """A page of audit rows, newest first, and the offset of the next page (None on the last)."""

    entries: list[AuditEntryRecord]
    next_offset: int | None


def list_audit(catalog: AuditCatalog, where: AuditFilter, *, limit: int = 50, offset: int = 0) -> AuditSlice:
    """The audit rows ``where`` selects, newest first: ``limit`` (1-500) after skipping ``offset``."""
    if not 1 <= limit <= MAX_PAGE:
        raise OdsError(f"limit {limit} is out of range: ask for 1 to {MAX_PAGE} rows")
    if offset < 0:
        raise OdsError(f"offset {offset} is negative: skip 0 or more rows")
    entries = catalog.list_audit_entries(where, limit=limit + 1, offset=offset)
    more = len(entries) > limit
    return AuditSlice(entries=entries[:limit], next_offset=offset + limit if more else None)


def prune_audit(catalog: AuditCatalog, retention_days: int, now: datetime | None = None) -> int:
    """Delete the audit rows older than ``retention_days``; returns how many (logged when any)."""
    pruned = catalog.prune_audit_entries((now or utcnow()) - timedelta(days=retention_days))
    if pruned:
        logger.info(
            "audit: pruned %d row(s) older than %d days (ODS_AUDIT__RETENTION_DAYS)", pruned, retention_days
        )
    return pruned
