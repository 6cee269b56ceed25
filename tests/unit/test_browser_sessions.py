"""The refresh logic of ``ods.api.sessions.BrowserSessions`` with injected fakes (catalog, provider client,
token verifier): what no real provider lets a test arrange deterministically, two server processes
refreshing one session at the same moment."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest

from ods.adapters.catalog.login_sessions import LoginSessionRecord
from ods.adapters.identity.login import LoginRefused, TokenSet
from ods.adapters.identity.session_seal import new_session_secret, seal, session_id, unseal
from ods.api.sessions import BrowserSessions
from ods.domain.identity import AuthenticationRefused, Principal
from ods.settings import AuthSettings

NOW = 1_800_000_000.0


@dataclass
class MemoryCatalog:
    rows: dict[str, LoginSessionRecord] = field(default_factory=dict)

    def put_login_session(self, record: LoginSessionRecord) -> None:
        self.rows[record.id] = record

    def get_login_session(self, session_id: str, now: datetime) -> LoginSessionRecord | None:
        row = self.rows.get(session_id)
        return row if row is not None and row.expires_at > now else None

    def take_login_session(self, session_id: str, now: datetime) -> LoginSessionRecord | None:
        row = self.rows.pop(session_id, None)
        return row if row is not None and row.expires_at > now else None

    def delete_login_session(self, session_id: str) -> bool:
        return self.rows.pop(session_id, None) is not None

    def prune_login_sessions(self, now: datetime) -> int:
        return 0


@dataclass
class Provider:
    """Refuses every refresh; ``meanwhile`` runs first (another server process refreshing)."""

    catalog: MemoryCatalog
    meanwhile: Any = None
    issuer: str = "https://sso.example.com/realms/ods"

    def refresh(self, refresh_token: str) -> TokenSet:
        if self.meanwhile is not None:
            self.meanwhile()
        raise LoginRefused("the refresh token was refused by the provider (invalid_grant)")


class Verifier:
    def verify(self, token: str) -> dict[str, Any]:
        return {"sub": "alice", "token": token}


def _sessions(catalog: MemoryCatalog, provider: Provider) -> BrowserSessions:
    return BrowserSessions(
        catalog=lambda: catalog,
        client=provider,  # type: ignore[arg-type]
        access_tokens=Verifier(),  # type: ignore[arg-type]
        principal_of=lambda claims: Principal(
            subject=claims["sub"], tenant="acme", roles=frozenset({"data_viewer"}), kind="token"
        ),
        auth=AuthSettings(issuer="https://sso.example.com/realms/ods", audience="ods-api"),
        clock=lambda: NOW,
    )


def _signed_in(catalog: MemoryCatalog, secret: str, access: str, expires_at: float) -> LoginSessionRecord:
    record = LoginSessionRecord(
        id=session_id(secret),
        kind="active",
        expires_at=datetime.fromtimestamp(NOW + 3600).astimezone(),
        sealed=seal(secret, {"access_token": access, "expires_at": expires_at, "refresh_token": "r1"}),
    )
    catalog.put_login_session(record)
    return record


def test_a_refresh_refused_because_another_process_just_refreshed_keeps_the_session() -> None:
    catalog, secret = MemoryCatalog(), new_session_secret()
    record = _signed_in(catalog, secret, "old-token", expires_at=NOW + 10)  # due: within the 60 s margin

    def other_process_refreshes() -> None:
        tokens = {"access_token": "new-token", "expires_at": NOW + 900, "refresh_token": "r2"}
        catalog.put_login_session(replace(record, sealed=seal(secret, tokens)))

    caller = _sessions(catalog, Provider(catalog, other_process_refreshes)).caller(secret)

    assert caller is not None and caller.access_token == "new-token" and caller.principal.subject == "alice"
    assert unseal(secret, catalog.rows[session_id(secret)].sealed)["refresh_token"] == "r2"


def test_a_refused_refresh_with_nobody_else_refreshing_ends_the_session() -> None:
    catalog, secret = MemoryCatalog(), new_session_secret()
    _signed_in(catalog, secret, "old-token", expires_at=NOW + 10)

    with pytest.raises(AuthenticationRefused, match="session has ended"):
        _sessions(catalog, Provider(catalog)).caller(secret)
    assert catalog.rows == {}


def test_a_token_not_yet_due_is_used_without_asking_the_provider() -> None:
    catalog, secret = MemoryCatalog(), new_session_secret()
    _signed_in(catalog, secret, "current", expires_at=NOW + 600)

    caller = _sessions(catalog, Provider(catalog)).caller(secret)

    assert caller is not None and caller.access_token == "current"
    assert _sessions(catalog, Provider(catalog)).caller(new_session_secret()) is None  # unknown cookie
