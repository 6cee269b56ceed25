"""API keys of `ods serve` (migration 0005): stored as SHA-256 digests with a display prefix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import CatalogBase, add_row, to_record
from ods.adapters.catalog.records import ApiKeyRecord
from ods.adapters.catalog.schema import ApiKey, utcnow
from ods.domain.api_keys import ApiKeyExistsError
from ods.domain.names import check_name
from ods.errors import NotFoundError


class ApiKeyTables(CatalogBase):
    """``api_keys``: one row per key ever made, revoked ones included."""

    def add_api_key(
        self,
        name: str,
        *,
        key_hash: str,
        prefix: str,
        expires_at: datetime | None = None,
        tenant: str = "default",
        roles: Sequence[str] = ("super_admin",),
    ) -> ApiKeyRecord:
        """Record a new key by its digest, bound to ``tenant`` and ``roles``; ApiKeyExistsError when
        ``name`` is taken (revoked keys too)."""
        check_name("API key", name)

        def work(session: Session) -> ApiKeyRecord:
            existing = session.scalar(select(ApiKey).where(ApiKey.name == name))
            if existing is not None:
                state = "revoked" if existing.revoked_at is not None else "in use"
                raise ApiKeyExistsError(
                    f"an API key named {name!r} exists already ({state}); choose another name, e.g. "
                    f"'{name[:59]}-2'"
                )
            row = ApiKey(
                name=name,
                key_hash=key_hash,
                prefix=prefix,
                expires_at=expires_at,
                tenant=tenant,
                roles=sorted(roles),
            )
            return _record(add_row(session, row))

        return self._write(work)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first (revoked and expired ones included)."""

        def work(session: Session) -> list[ApiKeyRecord]:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))
            return [_record(row) for row in rows]

        return self._read(work)

    def api_keys_with_prefix(self, prefix: str) -> list[ApiKeyRecord]:
        """The keys whose display prefix is ``prefix`` (one, almost always): an indexed lookup."""

        def work(session: Session) -> list[ApiKeyRecord]:
            rows = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix).order_by(ApiKey.id))
            return [_record(row) for row in rows]

        return self._read(work)

    def revoke_api_key(self, name: str) -> ApiKeyRecord:
        """Mark the key called ``name`` revoked now (a revoked key keeps its first revocation time);
        NotFoundError listing the key names there are."""

        def work(session: Session) -> ApiKeyRecord:
            row = session.scalar(select(ApiKey).where(ApiKey.name == name))
            if row is None:
                names = list(session.scalars(select(ApiKey.name).order_by(ApiKey.name).limit(21)))
                known = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "none"
                raise NotFoundError(f"no API key named {name!r}; known keys: {known} (see `ods keys list`)")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.flush()
            return _record(row)

        return self._write(work)

    def touch_api_key(self, key_id: int, used_at: datetime) -> None:
        """Record that the key was used at ``used_at`` (a later time never goes back)."""

        def work(session: Session) -> None:
            session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < used_at))
                .values(last_used_at=used_at)
            )

        self._write(work)

    def count_active_api_keys(self, now: datetime) -> int:
        """How many keys are neither revoked nor expired at ``now``."""

        def work(session: Session) -> int:
            query = select(func.count()).where(
                ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
            )
            return session.scalar(query.select_from(ApiKey)) or 0

        return self._read(work)


def _record(row: ApiKey) -> ApiKeyRecord:
    return to_record(ApiKeyRecord, row, roles=tuple(row.roles))
