"""The console's sign-in routes: ``/auth/login``, ``/auth/callback``, ``/auth/logout`` and the sign-in page
``/auth/sign-in`` (authorization code + PKCE against ODS_AUTH__ISSUER with ODS_AUTH__CONSOLE_CLIENT_ID;
``ods.api.sessions`` keeps the sessions).

Cookies: ``ods_login`` (the pending login, path ``/auth``, ten minutes) and ``ods_session`` (the session,
path ``/``), both HttpOnly opaque random values; ``ods_csrf`` (the session's CSRF token, which the
console's ``csrf.js`` copies into the ``X-CSRF-Token`` header of its writes). All SameSite=Lax, Secure when
the request came over https or ODS_AUTH__SECURE_COOKIES is set. A login, a refused login and a logout each write an audit row
(``auth.login`` / ``auth.logout``). Without an issuer and a console client there is no login: the routes
answer 404 saying so (the local profile's console needs none).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import jinja2
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ods.adapters.catalog.audit import AuditEntryRecord
from ods.adapters.catalog.schema import AuditOutcome, utcnow
from ods.adapters.identity.login import OidcLoginClient
from ods.adapters.identity.session_seal import csrf_matches, csrf_token
from ods.api.audit import AuditWriter
from ods.api.auth import principal_of_claims, verifier_from
from ods.api.envelope import NOT_FOUND, current_request_id, error_response
from ods.api.resources import Resources
from ods.api.sessions import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    LOGIN_PENDING_S,
    SESSION_COOKIE,
    BrowserSessions,
    safe_next_path,
)
from ods.domain.identity import AuthenticationRefused, Principal
from ods.settings import AuthSettings, Settings

router = APIRouter(prefix="/auth", include_in_schema=False)

TEMPLATES: Final = Path(__file__).parent / "console" / "templates"
SIGN_IN: Final = "/auth/sign-in"
NO_LOGIN: Final = (
    "this server has no browser login: set ODS_AUTH__ISSUER, ODS_AUTH__AUDIENCE and ODS_AUTH__CONSOLE_CLIENT_ID "
    "(docs/security.md, 'Console login'); on the local profile without an issuer the console needs no login"
)
PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'; form-action 'self' {issuer}"
)
"""The sign-in pages' Content-Security-Policy: the sign-in form's answer redirects to the provider, and
browsers hold a redirect after a form to ``form-action``, so the issuer's origin is allowed there."""


def browser_sessions_from(settings: Settings, resources: Resources) -> BrowserSessions | None:
    """The browser sessions of ODS_AUTH__CONSOLE_CLIENT_ID; None without an issuer and a console client."""
    auth = settings.auth
    verifier = verifier_from(auth)
    if verifier is None or auth.issuer is None or auth.console_client_id is None:
        return None
    secret = auth.console_client_secret
    client = OidcLoginClient(
        issuer=auth.issuer,
        client_id=auth.console_client_id,
        client_secret=secret.get_secret_value() if secret is not None else None,
        leeway_s=auth.leeway_s,
    )
    return BrowserSessions(
        catalog=lambda: resources.catalog,
        client=client,
        access_tokens=verifier,
        principal_of=lambda claims: principal_of_claims(claims, auth),
        auth=auth,
    )


def install_login(app: FastAPI, settings: Settings, resources: Resources) -> None:
    """Serve ``/auth/*`` on ``app`` and keep its browser sessions in ``app.state.sessions`` (ApiAccess
    reads them to authenticate the session cookie)."""
    app.state.sessions = browser_sessions_from(settings, resources)
    app.state.auth_settings = settings.auth
    app.include_router(router)


def _sessions(request: Request) -> BrowserSessions | None:
    sessions: BrowserSessions | None = getattr(request.app.state, "sessions", None)
    return sessions


def _auth(request: Request) -> AuthSettings:
    auth: AuthSettings = request.app.state.auth_settings
    return auth


def _base_url(request: Request) -> str:
    public = _auth(request).public_url
    return public or f"{request.url.scheme}://{request.url.netloc}"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or _auth(request).secure_cookies


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _sign_in_page(
    request: Request,
    next_path: str,
    *,
    message: str | None = None,
    status: int = 200,
    provider_logout: str | None = None,
) -> HTMLResponse:
    """The sign-in page (with ``message``); with ``provider_logout``, the signed-out page that goes on to
    the provider's logout (a meta refresh and a link: the console's pages allow no script of their own)."""
    html = (
        _templates()
        .get_template("login.html")
        .render(next_path=next_path, message=message, provider_logout=provider_logout)
    )
    issuer = urlsplit(_auth(request).issuer or "")
    headers = {
        "Content-Security-Policy": PAGE_POLICY.format(issuer=f"{issuer.scheme}://{issuer.netloc}").strip(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(html, status_code=status, headers=headers)


def _audit(
    request: Request,
    action: str,
    outcome: AuditOutcome,
    status: int,
    detail: str,
    principal: Principal | None = None,
) -> None:
    client = request.client
    writer: AuditWriter | None = getattr(request.app.state, "audit", None)
    if writer is None:
        return
    writer.submit(
        [
            AuditEntryRecord(
                at=utcnow(),
                tenant=principal.tenant if principal else None,
                subject=principal.subject if principal else None,
                roles=tuple(sorted(principal.roles)) if principal else (),
                action=action,
                resource=request.url.path,
                outcome=outcome,
                status_code=status,
                request_id=current_request_id() or None,
                client=client.host[:100] if client else None,
                detail=detail[:2000],
            )
        ]
    )


@router.get("/sign-in")
def sign_in(request: Request, next: str | None = None) -> Response:
    """The sign-in page: one button to the provider (the console sends signed-out browsers here)."""
    if _sessions(request) is None:
        return error_response(request.url.path, NOT_FOUND, NO_LOGIN)
    return _sign_in_page(request, safe_next_path(next))


@router.get("/login")
async def login(request: Request, next: str | None = None) -> Response:
    """Start a login: remember it (state, nonce, PKCE verifier, ``next``) and send the browser to the
    provider's authorization endpoint."""
    sessions = _sessions(request)
    if sessions is None:
        return error_response(request.url.path, NOT_FOUND, NO_LOGIN)
    try:
        secret, url = await run_in_threadpool(
            sessions.start, redirect_uri=f"{_base_url(request)}/auth/callback", next_path=safe_next_path(next)
        )
    except AuthenticationRefused as error:
        return _sign_in_page(request, safe_next_path(next), message=str(error), status=503)
    response = RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        LOGIN_COOKIE,
        secret,
        max_age=LOGIN_PENDING_S,
        path="/auth",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


@router.get("/callback")
async def callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    iss: str | None = None,
) -> Response:
    """Finish a login: check it, open the session, set its cookie and go back where the login started."""
    sessions = _sessions(request)
    if sessions is None:
        return error_response(request.url.path, NOT_FOUND, NO_LOGIN)
    if error is not None:
        reason = f"the provider ended the login: {' '.join(error.split())[:100]}"
        await run_in_threadpool(sessions.end, request.cookies.get(LOGIN_COOKIE))
        finished = None
    else:
        try:
            finished = await run_in_threadpool(
                sessions.finish,
                login_secret=request.cookies.get(LOGIN_COOKIE),
                state=state,
                code=code,
                issuer=iss,
            )
        except AuthenticationRefused as refused:
            reason, finished = str(refused), None
    if finished is None:
        _audit(request, "auth.login", "refused", 400, reason)
        response: Response = _sign_in_page(request, "/", message=f"Sign-in failed: {reason}.", status=400)
    else:
        _audit(request, "auth.login", "allowed", 303, "by console session", finished.principal)
        response = RedirectResponse(
            finished.next_path, status_code=303, headers={"Cache-Control": "no-store"}
        )
        response.set_cookie(
            SESSION_COOKIE,
            finished.secret,
            max_age=_auth(request).session_s,
            path="/",
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
        response.set_cookie(
            CSRF_COOKIE,
            csrf_token(finished.secret),
            max_age=_auth(request).session_s,
            path="/",
            httponly=False,  # the console's csrf.js reads it into the X-CSRF-Token header
            samesite="lax",
            secure=_secure(request),
        )
    response.delete_cookie(LOGIN_COOKIE, path="/auth", httponly=True, samesite="lax", secure=_secure(request))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (its CSRF token required, as a form field or the X-CSRF-Token header), forget its
    cookie and send the browser on to the provider's logout when it has one (a page that goes there at
    once: a redirect after the console's form would break its form-action policy), else to the sign-in
    page."""
    sessions = _sessions(request)
    if sessions is None:
        return error_response(request.url.path, NOT_FOUND, NO_LOGIN)
    secret = request.cookies.get(SESSION_COOKIE)
    signed_out = f"{_base_url(request)}{SIGN_IN}"
    if not secret:
        return RedirectResponse(SIGN_IN, status_code=303)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not csrf_matches(secret, sent):
        _audit(request, "auth.logout", "refused", 403, "the logout's CSRF token is missing or wrong")
        return _sign_in_page(
            request, "/", message="Sign-out refused: the form's CSRF token is missing or wrong.", status=403
        )
    ended = await run_in_threadpool(sessions.end, secret)
    subject = ended.subject if ended else None
    principal = (
        Principal(subject=subject, tenant=ended.tenant or "", roles=frozenset(), kind="token")
        if ended and subject
        else None
    )
    target: str | None = None
    if ended is not None:
        id_token = sessions.id_token_of(secret, ended)
        target = await run_in_threadpool(
            sessions.client.end_session_url, id_token_hint=id_token, post_logout_redirect_uri=signed_out
        )
    response = (
        _sign_in_page(request, "/", message="You are signed out of the console.", provider_logout=target)
        if target
        else RedirectResponse(SIGN_IN, status_code=303, headers={"Cache-Control": "no-store"})
    )
    _audit(request, "auth.logout", "allowed", response.status_code, "console session ended", principal)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="lax", secure=_secure(request))
    return response
