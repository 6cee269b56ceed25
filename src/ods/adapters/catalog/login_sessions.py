"""The console's login sessions (migration 0013): rows the server side of the OIDC login keeps.

A row is keyed by the SHA-256 of the random value in the browser's cookie and holds its data sealed with a
key derived from that value (``ods.adapters.identity.session_seal``): this module stores and hands back
opaque strings and never sees a token. A ``pending`` row (a login between ``/auth/login`` and
``/auth/callback``) is taken once: :meth:`LoginSessionTables.take_login_session` deletes it as it reads
it, so a replayed callback finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import CatalogBase, to_record
from ods.adapters.catalog.schema import LoginSession, LoginSessionKind


@dataclass(frozen=True)
class LoginSessionRecord:
    """One login session row: ``sealed`` is opaque here (encrypted by the API's session layer)."""

    id: str
    kind: LoginSessionKind
    expires_at: datetime
    sealed: str
    tenant: str | None = None
    subject: str | None = None
    created_at: datetime | None = None


class LoginSessionCatalog(Protocol):
    """The console's login sessions (``ods.api.sessions``)."""

    def put_login_session(self, record: LoginSessionRecord) -> None: ...

    def get_login_session(self, session_id: str, now: datetime) -> LoginSessionRecord | None: ...

    def take_login_session(self, session_id: str, now: datetime) -> LoginSessionRecord | None: ...

    def delete_login_session(self, session_id: str) -> bool: ...

    def prune_login_sessions(self, now: datetime) -> int: ...


class LoginSessionTables(CatalogBase):
    """``login_sessions``."""

    def put_login_session(self, record: LoginSessionRecord) -> None:
        """Insert ``record``, or replace the row of the same id (a refresh re-seals the tokens)."""

        def work(session: Session) -> None:
            row = session.get(LoginSession, record.id)
            if row is None:
                row = LoginSession(id=record.id)
                if record.created_at is not None:
                    row.created_at = record.created_at
                session.add(row)
            row.kind = record.kind
            row.tenant = record.tenant
            row.subject = record.subject
            row.expires_at = record.expires_at
            row.sealed = record.sealed

        self._write(work)

    def get_login_session(self, session_id: str, now: datetime) -> LoginSessionRecord | None:
        """The row ``session_id`` while it has not expired at ``now``; None otherwise."""
        query = select(LoginSession).where(LoginSession.id == session_id, LoginSession.expires_at > now)
        return self._read(lambda session: _record(session.scalars(query).first()))

    def take_login_session(self, session_id: str, now: datetime) -> LoginSessionRecord | None:
        """Delete the row ``session_id`` and return it when it had not expired: at most one caller gets it."""

        def work(session: Session) -> LoginSessionRecord | None:
            query = delete(LoginSession).where(LoginSession.id == session_id).returning(LoginSession)
            row = session.scalars(query).first()
            if row is None or row.expires_at <= now:
                return None
            return _record(row)

        return self._write(work)

    def delete_login_session(self, session_id: str) -> bool:
        """Delete the row ``session_id``; whether there was one."""

        def work(session: Session) -> bool:
            result = session.execute(delete(LoginSession).where(LoginSession.id == session_id))
            return bool(getattr(result, "rowcount", 0))

        return self._write(work)

    def prune_login_sessions(self, now: datetime) -> int:
        """Delete the rows expired at ``now``; returns how many."""

        def work(session: Session) -> int:
            result = session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)

        return self._write(work)


def _record(row: LoginSession | None) -> LoginSessionRecord | None:
    return None if row is None else to_record(LoginSessionRecord, row)
