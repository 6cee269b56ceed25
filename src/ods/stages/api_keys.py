"""API keys of `ods serve`: made, listed and revoked by `ods keys`, checked by the server on each request.

The key itself exists only in the reply to :func:`create_api_key`; the catalog keeps its SHA-256 and its
display prefix. A check reads the catalog every time (one indexed query), so a revoked key is refused on
the very next request; the time a key was last used is written at most once a minute per key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ods.adapters.catalog import ApiKeyCatalog, ApiKeyRecord
from ods.adapters.catalog.schema import utcnow
from ods.domain.api_keys import (
    ApiKeyRefused,
    ApiKeyRevokedOrExpired,
    digests_match,
    display_prefix,
    is_api_key_shaped,
    key_state,
    new_api_key,
    parse_expiry,
)
from ods.domain.identity import DEFAULT_TENANT, Principal, check_roles, check_tenant
from ods.domain.names import check_name

LAST_USED_RESOLUTION = timedelta(minutes=1)
"""How stale ``last_used_at`` may get: a busy key is written once a minute, not on every request."""
NEEDS_KEY = (
    "this route needs an API key: send 'Authorization: Bearer <key>' (an administrator makes one with "
    "`ods keys create NAME --role ROLE`)"
)
UNKNOWN_KEY = "API key not recognised: send a key made by `ods keys create` as 'Authorization: Bearer <key>'"


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key: its record and the key itself, to be shown once and never again."""

    record: ApiKeyRecord
    key: str


def create_api_key(
    catalog: ApiKeyCatalog,
    name: str,
    *,
    roles: Iterable[str],
    tenant: str = DEFAULT_TENANT,
    expires: str | None = None,
    now: datetime | None = None,
) -> CreatedApiKey:
    """A new random key called ``name``: a service account of ``tenant`` holding ``roles`` (known roles,
    at least one), stored as its digest; ``expires`` (``30d``, ``12h``, ``90m``) sets its lifetime, None:
    until revoked. Bad names, tenants, roles and lifetimes are refused before anything is made."""
    check_name("API key", name)
    held = check_roles(roles)
    check_tenant(tenant)
    lifetime = parse_expiry(expires) if expires is not None else None
    made = new_api_key()
    expires_at = (now or utcnow()) + lifetime if lifetime is not None else None
    record = catalog.add_api_key(
        name,
        key_hash=made.digest,
        prefix=made.prefix,
        expires_at=expires_at,
        tenant=tenant,
        roles=sorted(held),
    )
    return CreatedApiKey(record=record, key=made.secret)


def principal_of_key(record: ApiKeyRecord) -> Principal:
    """The service account a key is: its name within its tenant, with its roles."""
    return Principal(subject=record.name, tenant=record.tenant, roles=frozenset(record.roles), kind="api_key")


def api_key_state(record: ApiKeyRecord, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired``."""
    return key_state(revoked_at=record.revoked_at, expires_at=record.expires_at, now=now or utcnow())


def authenticate_api_key(catalog: ApiKeyCatalog, key: str, now: datetime | None = None) -> ApiKeyRecord:
    """The active key ``key`` is; ApiKeyRefused when it is unknown, ApiKeyRevokedOrExpired saying which
    (naming the key by its name, never by its characters)."""
    at = now or utcnow()
    if not is_api_key_shaped(key):
        raise ApiKeyRefused(UNKNOWN_KEY)
    record = next(
        (
            found
            for found in catalog.api_keys_with_prefix(display_prefix(key))
            if digests_match(key, found.key_hash)
        ),
        None,
    )
    if record is None:
        raise ApiKeyRefused(UNKNOWN_KEY)
    state = api_key_state(record, at)
    if state == "revoked" and record.revoked_at is not None:
        raise ApiKeyRevokedOrExpired(
            f"API key {record.name!r} was revoked at {_stamp(record.revoked_at)}; ask for a new key"
        )
    if state == "expired" and record.expires_at is not None:
        raise ApiKeyRevokedOrExpired(
            f"API key {record.name!r} expired at {_stamp(record.expires_at)}; ask for a new key"
        )
    if record.last_used_at is None or at - record.last_used_at >= LAST_USED_RESOLUTION:
        catalog.touch_api_key(record.id, at)
    return record


def keys_required(catalog: ApiKeyCatalog, now: datetime | None = None) -> bool:
    """Whether any active key exists: from then on every request needs one."""
    return catalog.count_active_api_keys(now or utcnow()) > 0


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
