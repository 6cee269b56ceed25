"""Who may call `ods serve`, and how often: API keys and OpenID bearer tokens (``Authorization: Bearer
<key or token>``), the console's session cookie, and rate limits.

- ``/healthz`` is always open: it says only that the process answers.
- ``/readyz``, ``/metrics``, ``/docs``, ``/redoc`` and ``/openapi.json`` are open to clients on this
  machine (loopback) and need a key from anywhere else: they name components and routes, not data.
- ``/api/v1/downloads/{token}`` needs no key: the signed, expiring token in its path is the credential
  (``ods.api.downloads``).
- Every other route needs an active key or, once ``ODS_AUTH__ISSUER`` is set, a valid access token of that
  issuer (``ods.adapters.identity.oidc`` checks it). On the local profile with no issuer and no active key,
  loopback clients may call without one and act as a local ``super_admin`` (a placeholder such as the
  ``openai`` client's ``api_key`` is ignored, but a revoked or expired key is still refused). Once one key
  is active or an issuer is set, every request needs credentials.
- Without an ``Authorization`` header, a browser's console session cookie (``ods_session``, once
  ODS_AUTH__CONSOLE_CLIENT_ID is set: ``ods.api.sessions``) names the principal of its access token; a
  state-changing request so authenticated needs the session's ``X-CSRF-Token`` (403 otherwise), and a
  signed-out browser asking for a console page is sent to ``/auth/sign-in``. The sign-in routes
  (``/auth/*``, ``ods.api.login``) and the console's CSS and JavaScript are open.
- The credentials name a :class:`~ods.domain.identity.Principal` (subject, tenant, roles), kept in the
  request's state for ``ods.api.authorization``, which checks the route's permission. An ``X-Tenant-ID``
  header must name the principal's tenant.

A key is checked against the catalog on every request (one indexed query), so a revoked key is refused at
once. Requests that pass count against their caller's rate limit per API type (``rate_limits.py``); the
answer carries ``X-RateLimit-*`` headers, and a request over the limit gets 429 (code 42901). A refusal
never repeats the key it was sent.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ods.adapters.catalog.schema import utcnow
from ods.adapters.identity.oidc import OidcVerifier
from ods.adapters.identity.session_seal import csrf_matches
from ods.api.envelope import RATE_LIMITED, error_response, ods_error_response
from ods.api.rate_limits import SlidingWindowLimiter, api_type_of
from ods.api.resources import Resources
from ods.api.sessions import CSRF_HEADER, SESSION_COOKIE, BrowserSessions, CsrfRefused, SessionCaller
from ods.domain.api_keys import ApiKeyRefused, ApiKeyRevokedOrExpired, is_api_key_shaped
from ods.domain.identity import (
    TENANT_PATTERN,
    AuthenticationRefused,
    Principal,
    TokenRefused,
    local_admin,
    roles_from_claims,
    tenant_from_claims,
)
from ods.errors import OdsError
from ods.settings import AuthSettings, Settings
from ods.stages.api_keys import NEEDS_KEY, authenticate_api_key, keys_required, principal_of_key

ALWAYS_OPEN: Final = frozenset({"/healthz"})
OPEN_PREFIXES: Final = ("/auth/", "/console/static/")
"""The console's sign-in routes (they authenticate by themselves) and its CSS/JS (no data in them)."""
STATE_CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_ON_LOOPBACK: Final = frozenset(
    {"/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
SIGNED_URL_PREFIX: Final = "/api/v1/downloads/"
_CHALLENGE = (b"www-authenticate", b'Bearer realm="ods"')
TENANT_HEADER: Final = b"x-tenant-id"
NEEDS_CREDENTIALS: Final = (
    "this route needs credentials: send 'Authorization: Bearer <token>' with an access token of the "
    "configured issuer (ODS_AUTH__ISSUER), or an API key made by `ods keys create NAME --role ROLE`"
)


def is_loopback_address(host: str) -> bool:
    """Whether ``host`` (a client or bind address) is this machine only: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def limiter_from(settings: Settings) -> SlidingWindowLimiter:
    """The limiter of ``ODS_API__RATE_LIMIT_INFERENCE``, ``__RATE_LIMIT_QUERY`` and ``__RATE_LIMIT_METADATA``."""
    api = settings.api
    return SlidingWindowLimiter(
        {
            "inference": api.rate_limit_inference,
            "query": api.rate_limit_query,
            "metadata": api.rate_limit_metadata,
        }
    )


class ApiAccess:
    """ASGI middleware: authenticates each request (see the module's rules), then counts it against its
    caller's rate limit. It sits inside the request-context middleware, so its refusals carry the
    request id and are counted in the metrics."""

    def __init__(self, app: ASGIApp, *, resources: Resources, settings: Settings) -> None:
        self.app = app
        self.resources = resources
        self.local_profile = settings.profile == "local"
        self.limiter = limiter_from(settings)
        self.auth = settings.auth
        self.verifier = verifier_from(settings.auth)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in ALWAYS_OPEN
            or path.startswith(SIGNED_URL_PREFIX)
            or path.startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else ""
        loopback = is_loopback_address(address)
        if loopback and path in OPEN_ON_LOOPBACK:
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        sessions = _browser_sessions(scope)
        cookie = HTTPConnection(scope).cookies.get(SESSION_COOKIE) if token is None and sessions else None
        try:
            session = await run_in_threadpool(sessions.caller, cookie) if sessions and cookie else None
            if session is not None:
                principal = session.principal
                _check_tenant_header(scope, principal)
                _check_csrf(scope, session, cookie or "")
            else:
                principal = await run_in_threadpool(self._principal, token, address, loopback)
                _check_tenant_header(scope, principal)
        except OdsError as error:
            await _refusal(scope, path, error, signed_out=sessions is not None and token is None)(
                scope, receive, send
            )
            return
        if session is not None:
            scope.setdefault("state", {}).update(
                access_token=session.access_token, csrf_token=session.csrf_token
            )
        scope.setdefault("state", {})["principal"] = principal
        caller = f"address:{address}" if principal.kind == "local" else principal.rate_key
        api_type = api_type_of(path)
        decision = self.limiter.hit(caller, api_type) if api_type is not None else None
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = decision.headers()
        if not decision.allowed:
            response = error_response(
                path,
                RATE_LIMITED,
                f"rate limit of {decision.limit} {api_type} requests per minute reached; retry in "
                f"{decision.reset_s} s (limits: ODS_API__RATE_LIMIT_INFERENCE, __RATE_LIMIT_QUERY, "
                "__RATE_LIMIT_METADATA)",
            )
            response.headers.update(headers)
            await response(scope, receive, send)
            return
        encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *encoded]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def _principal(self, token: str | None, address: str, loopback: bool) -> Principal:
        """Who is calling; AuthenticationRefused when the request may not go on.

        Runs in a worker thread: it reads the catalog and may fetch the issuer's keys.
        """
        now: datetime = utcnow()
        catalog = self.resources.catalog
        if token is not None and is_api_key_shaped(token):
            try:
                return principal_of_key(authenticate_api_key(catalog, token, now))
            except ApiKeyRevokedOrExpired:
                raise
            except ApiKeyRefused:
                if not self._open(loopback, now):
                    raise
        elif token and self.verifier is not None:
            return principal_of_claims(self.verifier.verify(token), self.auth)
        elif not self._open(loopback, now):
            if self.verifier is not None:
                raise AuthenticationRefused(NEEDS_CREDENTIALS)
            raise ApiKeyRefused(NEEDS_KEY if token is None else "API key not recognised; " + NEEDS_KEY)
        return local_admin(address)

    def _open(self, loopback: bool, now: datetime) -> bool:
        """Whether this request may go on without credentials: local profile, loopback, no issuer, no
        active key."""
        return (
            self.local_profile
            and loopback
            and self.verifier is None
            and not keys_required(self.resources.catalog, now)
        )


def _browser_sessions(scope: Scope) -> BrowserSessions | None:
    """The app's browser sessions (``ods.api.login.install_login``); None without a console login."""
    app = scope.get("app")
    sessions: BrowserSessions | None = getattr(getattr(app, "state", None), "sessions", None)
    return sessions


def _check_csrf(scope: Scope, session: SessionCaller, cookie: str) -> None:
    """CsrfRefused (403) when a state-changing request authenticated by the session cookie lacks the
    session's CSRF token in ``X-CSRF-Token``; the principal is kept for the audit row."""
    if scope.get("method", "") not in STATE_CHANGES:
        return
    scope.setdefault("state", {})["principal"] = session.principal
    sent = HTTPConnection(scope).headers.get(CSRF_HEADER)
    if not csrf_matches(cookie, sent):
        raise CsrfRefused(
            f"this request changes state and is authenticated by the console's session cookie, so it needs the "
            f"session's CSRF token in the {CSRF_HEADER} header (the console's pages carry it); "
            f"{'it is missing' if sent is None else 'the one sent is wrong'}"
        )


def _refusal(scope: Scope, path: str, error: OdsError, *, signed_out: bool) -> Response:
    """The answer to a refused request: a console page sends a signed-out browser to the sign-in page;
    everything else answers the error (401 with the bearer challenge)."""
    console_page = path == "/" or path.startswith("/console/")
    if (
        signed_out
        and console_page
        and scope.get("method") == "GET"
        and isinstance(error, AuthenticationRefused)
    ):
        query = scope.get("query_string", b"").decode("latin-1")
        target = quote(path + (f"?{query}" if query else ""), safe="")
        redirect = RedirectResponse(f"/auth/sign-in?next={target}", status_code=303)
        redirect.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return redirect
    response = ods_error_response(path, error)
    if isinstance(error, AuthenticationRefused) and not isinstance(error, CsrfRefused):
        response.raw_headers.append(_CHALLENGE)
    return response


def verifier_from(auth: AuthSettings) -> OidcVerifier | None:
    """The token verifier of ``ODS_AUTH__ISSUER``; None when no issuer is set."""
    if auth.issuer is None or auth.audience is None:
        return None
    return OidcVerifier(
        issuer=auth.issuer,
        audience=auth.audience,
        leeway_s=auth.leeway_s,
        jwks_cache_s=auth.jwks_cache_s,
        min_refetch_s=auth.jwks_min_refetch_s,
    )


def principal_of_claims(claims: dict[str, Any], auth: AuthSettings) -> Principal:
    """The principal a verified token names: its subject (``sub``, else the client of a client-credentials
    token), its tenant and its known roles, per the claim mapping of ``auth``."""
    subject = claims.get("sub") or claims.get("client_id") or claims.get("azp")
    if not isinstance(subject, str) or not subject.strip():
        raise TokenRefused("token names no subject (sub)")
    return Principal(
        subject=subject[:200],
        tenant=tenant_from_claims(claims, auth.tenant_claim, auth.default_tenant),
        roles=roles_from_claims(claims, auth.role_claim_paths),
        kind="token",
    )


def _check_tenant_header(scope: Scope, principal: Principal) -> None:
    """TokenRefused when an ``X-Tenant-ID`` header names a tenant other than the principal's (the local
    administrator of a keyless local server has no tenant to disagree with)."""
    if principal.kind == "local":
        return
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == TENANT_HEADER:
            asked = value.decode("latin-1").strip()
            if asked != principal.tenant:
                shown = repr(asked) if TENANT_PATTERN.fullmatch(asked) else "another tenant"
                raise TokenRefused(
                    f"X-Tenant-ID names {shown} but these credentials belong to tenant {principal.tenant!r}"
                )


def _bearer_token(scope: Scope) -> str | None:
    """The credentials of an ``Authorization: Bearer …`` header; None without one."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return ""
    return None


def document_access(app: FastAPI) -> None:
    """Declare the bearer scheme in ``/openapi.json`` (so ``/docs`` offers "Authorize"), with the 401 and
    429 answers of every route that needs a key; ``/healthz`` is marked open."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["ApiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key made by `ods keys create NAME --role ROLE` (`ods_…`), or an "
                "access token of the OpenID issuer ODS_AUTH__ISSUER. On the local profile, while no issuer "
                "is set and no active key exists, clients on this machine may call without one.",
            }
            schema["security"] = [{"ApiKey": []}]
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    signed = path.startswith(SIGNED_URL_PREFIX)
                    if path in ALWAYS_OPEN or path in OPEN_ON_LOOPBACK or signed:
                        operation["security"] = [] if path in ALWAYS_OPEN or signed else [{"ApiKey": []}, {}]
                        continue
                    _document_refusals(operation, path, components.get("schemas", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_refusals(operation: dict[str, Any], path: str, schemas: dict[str, Any]) -> None:
    shape = "OpenAIError" if path.startswith("/v1/") else "ErrorEnvelope"
    content = (
        {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}}
        if shape in schemas
        else {}
    )
    responses = operation.setdefault("responses", {})
    responses.setdefault(
        "401",
        {
            "description": "No valid credentials: a key missing, unknown, revoked or expired, or a token "
            "that fails a check (code 40101).",
            "content": content,
        },
    )
    if path not in OPEN_ON_LOOPBACK:
        responses.setdefault(
            "403",
            {
                "description": "The caller's roles lack this route's permission (code 40301).",
                "content": content,
            },
        )
    if api_type_of(path) is not None:
        limited = {
            "description": "Over this key's rate limit (code 42901); see Retry-After.",
            "content": content,
        }
        responses.setdefault("429", limited)
