"""The console's browser sessions: the server side of the OIDC login (authorization code + PKCE).

- :meth:`BrowserSessions.start` keeps a ``pending`` login (state, nonce, PKCE verifier, where to return)
  under a fresh random cookie value and answers the provider's authorization URL.
- :meth:`BrowserSessions.finish` takes that login once (a replayed callback finds nothing), checks the
  state, exchanges the code with the verifier, checks the ID token (signature, ``iss``, ``aud``, ``exp``,
  ``nonce``) and the access token (the API's own checks), and keeps an ``active`` session under another
  fresh cookie value.
- :meth:`BrowserSessions.caller` turns a session cookie into the same principal the access token names as
  a bearer token, refreshing the tokens first when the access token expires within
  ODS_AUTH__REFRESH_MARGIN_S; a refused refresh ends the session.

Rows live in the catalog (``login_sessions``) keyed by the SHA-256 of the cookie's value and sealed with a
key derived from it (``ods.adapters.identity.session_seal``): no token is ever stored in clear or logged.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ods.adapters.catalog.login_sessions import LoginSessionCatalog, LoginSessionRecord
from ods.adapters.identity.login import LoginRefused, OidcLoginClient, TokenSet, new_pkce_pair
from ods.adapters.identity.oidc import OidcVerifier
from ods.adapters.identity.session_seal import (
    SealBroken,
    csrf_token,
    is_secret_shaped,
    new_session_secret,
    seal,
    session_id,
    unseal,
)
from ods.domain.identity import AuthenticationRefused, PermissionRefused, Principal, TokenRefused
from ods.settings import AuthSettings

SESSION_COOKIE: Final = "ods_session"
LOGIN_COOKIE: Final = "ods_login"
LOGIN_PENDING_S: Final = 600
CSRF_COOKIE: Final = "ods_csrf"
"""The session's CSRF token, readable by the console's script (signed double submit: the server checks the
header against an HMAC of the HttpOnly session cookie, never against this cookie)."""
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf_token"
SESSION_ENDED: Final = "your console session has ended; sign in again at /auth/login"
_LOCK_STRIPES: Final = 64


class CsrfRefused(PermissionRefused):
    """A state-changing request authenticated by the session cookie lacks its CSRF token (HTTP 403)."""


@dataclass(frozen=True)
class SessionCaller:
    """Who a session cookie signs in: the principal, its current access token (for the console's calls to
    the API in process) and the session's CSRF token."""

    principal: Principal
    access_token: str
    csrf_token: str


@dataclass(frozen=True)
class FinishedLogin:
    """A login that finished: the new session's cookie value, who signed in and where to send them."""

    secret: str
    principal: Principal
    next_path: str


def safe_next_path(value: str | None) -> str:
    """``value`` when it is a path on this server (``/…``, not ``//host`` or a scheme); else ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 for c in value) or len(value) > 2000:
        return "/"
    return value


class BrowserSessions:
    """The login sessions of one issuer's console client over the catalog. Safe to share between threads."""

    def __init__(
        self,
        *,
        catalog: Callable[[], LoginSessionCatalog],
        client: OidcLoginClient,
        access_tokens: OidcVerifier,
        principal_of: Callable[[dict[str, Any]], Principal],
        auth: AuthSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self.client = client
        self._access_tokens = access_tokens
        self._principal_of = principal_of
        self._auth = auth
        self._clock = clock
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def start(self, *, redirect_uri: str, next_path: str) -> tuple[str, str]:
        """A pending login: its cookie value and the provider's authorization URL to send the browser to."""
        secret = new_session_secret()
        pkce = new_pkce_pair()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        url = self.client.authorization_url(
            redirect_uri=redirect_uri,
            scopes=self._auth.scopes,
            state=state,
            nonce=nonce,
            code_challenge=pkce.challenge,
        )
        payload = {
            "state": state,
            "nonce": nonce,
            "verifier": pkce.verifier,
            "redirect_uri": redirect_uri,
            "next": safe_next_path(next_path),
        }
        catalog = self._catalog()
        catalog.prune_login_sessions(self._now())  # each new login clears the ended ones (one indexed delete)
        catalog.put_login_session(
            LoginSessionRecord(
                id=session_id(secret),
                kind="pending",
                expires_at=self._now() + timedelta(seconds=LOGIN_PENDING_S),
                sealed=seal(secret, payload),
            )
        )
        return secret, url

    def finish(
        self, *, login_secret: str | None, state: str | None, code: str | None, issuer: str | None = None
    ) -> FinishedLogin:
        """The session a provider's callback opens; LoginRefused naming what failed (the pending login is
        used up either way)."""
        if not login_secret or not is_secret_shaped(login_secret):
            raise LoginRefused(
                "no login in progress in this browser (its cookie is missing); start at /auth/login"
            )
        record = self._catalog().take_login_session(session_id(login_secret), self._now())
        if record is None or record.kind != "pending":
            raise LoginRefused(
                "no login in progress for this browser (it expired, was already used or never started); "
                "start again at /auth/login"
            )
        try:
            pending = unseal(login_secret, record.sealed)
        except SealBroken:
            raise LoginRefused("this login's state does not open with the browser's cookie") from None
        if not state or not secrets.compare_digest(str(pending["state"]).encode(), state.encode()):
            raise LoginRefused("the callback's state is not this login's (a forged or stale callback)")
        if issuer is not None and issuer != self.client.issuer:
            raise LoginRefused("the callback names another issuer (iss) than ODS_AUTH__ISSUER")
        if not code:
            raise LoginRefused("the callback carries no authorization code")
        tokens = self.client.exchange_code(
            code=code, code_verifier=str(pending["verifier"]), redirect_uri=str(pending["redirect_uri"])
        )
        if tokens.id_token is None:
            raise LoginRefused(
                "the provider answered no ID token; the console's scopes must include 'openid'"
            )
        identity = self.client.verify_id_token(tokens.id_token, str(pending["nonce"]))
        principal = self._principal(tokens.access_token, login=True)
        if identity.get("sub") not in (None, principal.subject):
            raise LoginRefused("the ID token and the access token name different subjects")
        secret = new_session_secret()
        self._store(secret, tokens, principal, created=self._now())
        return FinishedLogin(secret, principal, str(pending.get("next") or "/"))

    def caller(self, secret: str) -> SessionCaller | None:
        """Who the session cookie ``secret`` signs in, tokens refreshed when due; None when there is no such
        session (unknown, ended or expired); AuthenticationRefused when its tokens are refused."""
        if not is_secret_shaped(secret):
            return None
        key = session_id(secret)
        record = self._catalog().get_login_session(key, self._now())
        if record is None or record.kind != "active":
            return None
        tokens = self._tokens(secret, record)
        if tokens.expires_at - self._auth.refresh_margin_s <= self._clock():
            with self._locks[int(key[:8], 16) % _LOCK_STRIPES]:
                tokens = self._refresh(secret, key)
        return SessionCaller(self._principal(tokens.access_token), tokens.access_token, csrf_token(secret))

    def end(self, secret: str | None) -> LoginSessionRecord | None:
        """End the session ``secret`` (idempotent); the ended row's id token when there was one."""
        if not secret or not is_secret_shaped(secret):
            return None
        return self._catalog().take_login_session(session_id(secret), self._now())

    def id_token_of(self, secret: str, record: LoginSessionRecord) -> str | None:
        """The ID token a session (ended or not) holds, for the provider's logout."""
        try:
            return self._tokens(secret, record).id_token
        except AuthenticationRefused:
            return None

    def _refresh(self, secret: str, key: str) -> TokenSet:
        """Refresh the session's tokens (or take those a concurrent request just refreshed: in this
        process, behind the session's lock; in another server process, found after the provider refused
        the refresh token that process had just used)."""
        record = self._catalog().get_login_session(key, self._now())
        if record is None or record.kind != "active":
            raise AuthenticationRefused(SESSION_ENDED)
        tokens = self._tokens(secret, record)
        if tokens.expires_at - self._auth.refresh_margin_s > self._clock():
            return tokens  # another request refreshed them while this one waited
        if tokens.refresh_token is None:
            self._catalog().delete_login_session(key)
            raise AuthenticationRefused(SESSION_ENDED + " (the provider gave no refresh token)")
        try:
            fresh = self.client.refresh(tokens.refresh_token)
        except LoginRefused as error:
            latest = self._catalog().get_login_session(key, self._now())
            if latest is not None and latest.sealed != record.sealed:
                return self._tokens(secret, latest)  # another server process refreshed it meanwhile
            self._catalog().delete_login_session(key)
            raise AuthenticationRefused(f"{SESSION_ENDED} ({error})") from None
        if fresh.id_token is None and tokens.id_token is not None:
            fresh = TokenSet(fresh.access_token, fresh.expires_at, fresh.refresh_token, tokens.id_token)
        principal = self._principal(fresh.access_token)
        self._store(secret, fresh, principal, created=record.created_at, expires=record.expires_at)
        return fresh

    def _principal(self, access_token: str, *, login: bool = False) -> Principal:
        try:
            return self._principal_of(self._access_tokens.verify(access_token))
        except TokenRefused as error:
            if login:
                raise LoginRefused(f"the provider's access token is refused: {error}") from None
            raise

    def _tokens(self, secret: str, record: LoginSessionRecord) -> TokenSet:
        try:
            payload = unseal(secret, record.sealed)
            return TokenSet(
                access_token=str(payload["access_token"]),
                expires_at=float(payload["expires_at"]),
                refresh_token=payload.get("refresh_token"),
                id_token=payload.get("id_token"),
            )
        except (SealBroken, KeyError, TypeError, ValueError):
            raise AuthenticationRefused(SESSION_ENDED + " (its data does not open)") from None

    def _store(
        self,
        secret: str,
        tokens: TokenSet,
        principal: Principal,
        *,
        created: datetime | None,
        expires: datetime | None = None,
    ) -> None:
        payload = {
            "access_token": tokens.access_token,
            "expires_at": tokens.expires_at,
            "refresh_token": tokens.refresh_token,
            "id_token": tokens.id_token,
        }
        self._catalog().put_login_session(
            LoginSessionRecord(
                id=session_id(secret),
                kind="active",
                expires_at=expires or self._now() + timedelta(seconds=self._auth.session_s),
                sealed=seal(secret, payload),
                tenant=principal.tenant,
                subject=principal.subject,
                created_at=created,
            )
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)
