"""The console's browser login as `ods serve` runs it, against a real OpenID provider (node's oidc-provider):
authorization code + PKCE, the session cookie on the console and on /api/v1, refresh, logout, and the
attacks a login meets (wrong state, a replayed code, a code without its PKCE verifier, CSRF, a session of
tenant A claiming tenant B), each refused with a 4xx and an audit row.

The test drives the browser's side by hand with httpx (``sign_in`` follows the redirects and fills the
provider's own login form), so every redirect and cookie is checked where it happens.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from ods.adapters.identity.session_seal import seal, session_id, unseal
from ods.settings import load_settings
from tests.support.api_server import RunningApi, running_api
from tests.support.oidc_provider import (
    API_CLIENT,
    AUDIENCE,
    CONSOLE_CLIENT,
    OidcProvider,
    ProviderClient,
    ProviderUser,
    new_signing_key,
    sign_in,
)

USERS = (
    ProviderUser("alice", tenant="tenant-a", realm_roles=("data_engineer",), client_roles=("app_user",)),
    ProviderUser("victor", tenant="tenant-a", realm_roles=("data_viewer",)),
    ProviderUser("bob", tenant="tenant-b", realm_roles=("data_analyst",)),
)
ADMIN = ProviderClient("auditor", tenant="tenant-a", realm_roles=("super_admin",))


@dataclass(frozen=True)
class LoginWorld:
    provider: OidcProvider
    api: RunningApi
    refreshing: RunningApi
    """A second server whose refresh margin (30 min) exceeds the tokens' 15 minutes: every request refreshes."""

    def browser(self) -> httpx.Client:
        return httpx.Client(timeout=60)

    def login(
        self, client: httpx.Client, user: str, api: RunningApi | None = None, next_path: str = "/"
    ) -> str:
        """Sign ``user`` in on ``api``; the session cookie's value."""
        base = (api or self.api).base_url
        to_callback = sign_in(
            client, f"{base}/auth/login?next={next_path}", user, stop_at=f"{base}/auth/callback"
        )
        answer = client.get(to_callback.headers["location"])
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == next_path
        return str(client.cookies.get("ods_session", domain="127.0.0.1", path="/"))

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """The audit rows ``filters`` select (read by a super_admin: the queued rows are written first)."""
        token = self.provider.token(ADMIN.client_id)
        answer = httpx.get(
            f"{self.api.base_url}/api/v1/audit",
            params={"limit": 500, **filters},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["data"]["entries"]
        return rows


def _settings(home: Path, issuer: str, **auth: object) -> Any:
    return load_settings(
        home=home,
        auth={
            "issuer": issuer,
            "audience": AUDIENCE,
            "client_id": API_CLIENT,
            "console_client_id": CONSOLE_CLIENT,
            "scopes": "openid profile api",
            **auth,
        },
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginWorld]:
    folder = tmp_path_factory.mktemp("login")
    provider = OidcProvider.start(folder / "provider", [ADMIN], [new_signing_key("key-a")], users=USERS)
    try:
        with (
            running_api(_settings(folder / "ods-home", provider.issuer)) as api,
            running_api(
                _settings(folder / "refreshing", provider.issuer, refresh_margin_s=1800)
            ) as refreshing,
        ):
            yield LoginWorld(provider, api, refreshing)
    finally:
        provider.stop()


def _csrf(client: httpx.Client, api: RunningApi) -> str:
    """The session's CSRF token as the console's script reads it: the ``ods_csrf`` cookie."""
    token = client.cookies.get("ods_csrf", domain="127.0.0.1", path="/")
    assert token, "the login sets the ods_csrf cookie"
    return str(token)


def test_a_full_login_opens_a_session_for_the_console_and_the_api(world: LoginWorld) -> None:
    base = world.api.base_url
    with world.browser() as browser:
        start = browser.get(f"{base}/auth/login?next=/api/v1/datasets")
        assert start.status_code == 303
        request = parse_qs(urlsplit(start.headers["location"]).query)
        assert start.headers["location"].startswith(f"{world.provider.issuer}/auth?")
        assert request["client_id"] == [CONSOLE_CLIENT] and request["response_type"] == ["code"]
        assert request["code_challenge_method"] == ["S256"] and len(request["code_challenge"][0]) == 43
        assert request["redirect_uri"] == [f"{base}/auth/callback"]
        assert len(request["state"][0]) >= 32 and len(request["nonce"][0]) >= 32
        pending = start.headers["set-cookie"]
        assert "ods_login=" in pending and "HttpOnly" in pending and "SameSite=lax" in pending
        assert "Path=/auth" in pending and "Secure" not in pending  # plain http on loopback

        cookie = world.login(browser, "alice", next_path="/api/v1/datasets")
        assert len(cookie) >= 43

        datasets = browser.get(f"{base}/api/v1/datasets")
        assert datasets.status_code == 200 and datasets.json()["code"] == 0
        home = browser.get(f"{base}/")
        assert home.status_code == 200 and "alice" in home.text and "tenant-a" in home.text
        # the session's principal is the access token's: data_engineer may not delete a dataset it lacks
        refused = browser.get(f"{base}/api/v1/audit")
        assert refused.status_code == 403 and "holds: app_user, data_engineer" in refused.json()["message"]

        # the catalog keeps neither the cookie's value nor a token in clear
        row = world.api.resources.catalog.get_login_session(session_id(cookie), datetime.now(UTC))
        assert (
            row is not None and row.kind == "active" and row.subject == "alice" and row.tenant == "tenant-a"
        )
        assert cookie not in row.sealed and "eyJ" not in row.sealed.split(".", 1)[1]
        assert unseal(cookie, row.sealed)["refresh_token"]

    logins = world.audit(action="auth.login", outcome="allowed", subject="alice")
    assert any(entry["resource"] == "/auth/callback" and entry["tenant"] == "tenant-a" for entry in logins)


def test_a_signed_out_browser_is_sent_to_the_sign_in_page(world: LoginWorld) -> None:
    with world.browser() as browser:
        page = browser.get(f"{world.api.base_url}/console/datasets?q=x")
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/sign-in?next=%2Fconsole%2Fdatasets%3Fq%3Dx"
        sign_in_page = browser.get(f"{world.api.base_url}{page.headers['location']}")
        assert sign_in_page.status_code == 200 and 'action="/auth/login"' in sign_in_page.text
        assert 'value="/console/datasets?q=x"' in sign_in_page.text
        api = browser.get(f"{world.api.base_url}/api/v1/datasets")
        assert api.status_code == 401 and api.json()["code"] == 40101
    with httpx.Client(cookies={"ods_session": "forged-value"}) as forger:
        assert forger.get(f"{world.api.base_url}/api/v1/datasets").status_code == 401
    with world.browser() as browser:
        offsite = browser.get(f"{world.api.base_url}/auth/login?next=//evil.example/x")
        assert offsite.status_code == 303  # the login starts, but returns to / (never another host)


def test_state_changes_need_the_sessions_csrf_token(world: LoginWorld) -> None:
    base = world.api.base_url
    with world.browser() as browser:
        world.login(browser, "alice")
        token = _csrf(browser, world.api)
        missing = browser.post(f"{base}/api/v1/query/validate", json={"sql": "SELECT 1"})
        wrong = browser.post(
            f"{base}/api/v1/query/validate", json={"sql": "SELECT 1"}, headers={"X-CSRF-Token": "0" * 64}
        )
        assert missing.status_code == 403 and "CSRF token" in missing.json()["message"]
        assert wrong.status_code == 403 and "the one sent is wrong" in wrong.json()["message"]
        allowed = browser.post(
            f"{base}/api/v1/query/validate", json={"sql": "SELECT 1"}, headers={"X-CSRF-Token": token}
        )
        assert allowed.status_code not in (401, 403), allowed.text
        # a bearer token needs no CSRF token: no cookie, no cross-site forgery
        bearer = httpx.post(
            f"{base}/api/v1/query/validate",
            json={"sql": "SELECT 1"},
            headers={"Authorization": f"Bearer {world.provider.token(ADMIN.client_id)}"},
        )
        assert bearer.status_code not in (401, 403), bearer.text
    for answer in (missing, wrong):
        row = next(
            e for e in world.audit(outcome="refused") if e["request_id"] == answer.headers["x-request-id"]
        )
        assert row["subject"] == "alice" and row["status_code"] == 403 and "CSRF" in row["detail"]


def test_a_session_of_tenant_a_cannot_claim_tenant_b(world: LoginWorld) -> None:
    with world.browser() as browser:
        world.login(browser, "alice")
        claimed = browser.get(f"{world.api.base_url}/api/v1/datasets", headers={"X-Tenant-ID": "tenant-b"})
        assert claimed.status_code == 401 and "tenant 'tenant-a'" in claimed.json()["message"]
        own = browser.get(f"{world.api.base_url}/api/v1/datasets", headers={"X-Tenant-ID": "tenant-a"})
        assert own.status_code == 200
    rows = [e for e in world.audit(outcome="refused") if e["request_id"] == claimed.headers["x-request-id"]]
    assert len(rows) == 1 and rows[0]["status_code"] == 401


def test_a_callback_with_a_wrong_state_is_refused(world: LoginWorld) -> None:
    base = world.api.base_url
    with world.browser() as browser:
        to_callback = sign_in(browser, f"{base}/auth/login", "bob", stop_at=f"{base}/auth/callback")
        parts = urlsplit(to_callback.headers["location"])
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        forged = browser.get(f"{base}/auth/callback?{urlencode({**query, 'state': 'forged-state'})}")
        assert forged.status_code == 400 and "state is not this login's" in html.unescape(forged.text)
        assert "ods_session" not in browser.cookies
        # the pending login is used up: the genuine callback cannot follow the forged one
        late = browser.get(to_callback.headers["location"])
        assert late.status_code == 400 and "no login in progress" in html.unescape(late.text)
    refused = world.audit(action="auth.login", outcome="refused")
    assert any("state is not this login's" in (entry["detail"] or "") for entry in refused)


def test_a_replayed_code_is_refused(world: LoginWorld) -> None:
    base = world.api.base_url
    with world.browser() as browser:
        to_callback = sign_in(browser, f"{base}/auth/login", "bob", stop_at=f"{base}/auth/callback")
        callback = to_callback.headers["location"]
        assert browser.get(callback).status_code == 303
        replay = browser.get(callback)  # the same callback again: its login is gone
        assert replay.status_code == 400 and "no login in progress" in html.unescape(replay.text)
        # a fresh login in the same browser, answered with the old code and the new state
        fresh = browser.get(f"{base}/auth/login")
        state = parse_qs(urlsplit(fresh.headers["location"]).query)["state"][0]
        old_code = parse_qs(urlsplit(callback).query)["code"][0]
        reused = browser.get(f"{base}/auth/callback?{urlencode({'code': old_code, 'state': state})}")
        assert (
            reused.status_code == 400
            and "authorization code was refused by the provider" in html.unescape(reused.text)
        )
    details = [entry["detail"] or "" for entry in world.audit(action="auth.login", outcome="refused")]
    assert any("authorization code was refused" in detail for detail in details)


def test_a_code_is_useless_without_its_pkce_verifier(world: LoginWorld) -> None:
    base = world.api.base_url

    def victims_code() -> str:
        with world.browser() as victim:
            to_callback = sign_in(victim, f"{base}/auth/login", "bob", stop_at=f"{base}/auth/callback")
            return parse_qs(urlsplit(to_callback.headers["location"]).query)["code"][0]

    stolen = httpx.post(
        f"{world.provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": victims_code(),
            "client_id": CONSOLE_CLIENT,
            "redirect_uri": f"{base}/auth/callback",
        },
    )
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"

    # a stolen code injected into the attacker's own login: exchanged with that login's verifier, refused
    code = victims_code()
    with world.browser() as attacker:
        own = attacker.get(f"{base}/auth/login")
        state = parse_qs(urlsplit(own.headers["location"]).query)["state"][0]
        injected = attacker.get(f"{base}/auth/callback?{urlencode({'code': code, 'state': state})}")
        assert injected.status_code == 400
        assert "code was refused by the provider" in html.unescape(injected.text)
        assert "ods_session" not in attacker.cookies
    rows = [e for e in world.audit(action="auth.login", outcome="refused") if e["request_id"]]
    assert any(e["request_id"] == injected.headers["x-request-id"] for e in rows)

    # the provider refuses a login that offers no PKCE challenge at all
    plain = httpx.get(
        f"{world.provider.issuer}/auth",
        params={
            "client_id": CONSOLE_CLIENT,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": f"{base}/auth/callback",
            "state": "s" * 32,
        },
    )
    assert plain.status_code == 303 and "error=invalid_request" in plain.headers["location"]


def test_an_expiring_access_token_is_refreshed(world: LoginWorld) -> None:
    api = world.refreshing
    catalog = api.resources.catalog
    with world.browser() as browser:
        cookie = world.login(browser, "alice", api=api)
        key = session_id(cookie)

        def tokens() -> dict[str, Any]:
            row = catalog.get_login_session(key, datetime.now(UTC))
            assert row is not None
            return unseal(cookie, row.sealed)

        before = tokens()
        assert browser.get(f"{api.base_url}/api/v1/datasets").status_code == 200
        after = tokens()
        assert after["access_token"] != before["access_token"]
        assert after["refresh_token"] != before["refresh_token"]  # the provider rotates refresh tokens
        assert after["id_token"] == before["id_token"] or after["id_token"]
        assert (
            browser.get(f"{api.base_url}/api/v1/datasets").status_code == 200
        )  # the new refresh token works


def test_logout_ends_the_session_and_goes_to_the_providers_logout(world: LoginWorld) -> None:
    base = world.api.base_url
    with world.browser() as browser:
        cookie = world.login(browser, "victor")
        token = _csrf(browser, world.api)
        forged = browser.post(f"{base}/auth/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert browser.get(f"{base}/api/v1/datasets").status_code == 200  # still signed in

        out = browser.post(f"{base}/auth/logout", data={"csrf_token": token})
        assert out.status_code == 200  # a page that goes on to the provider (see ods.api.login.logout)
        found = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', out.text)
        assert found is not None and f'href="{found.group(1)}"' in out.text
        target = urlsplit(html.unescape(found.group(1)))
        assert f"{target.scheme}://{target.netloc}{target.path}" == f"{world.provider.issuer}/session/end"
        query = parse_qs(target.query)
        assert query["post_logout_redirect_uri"] == [f"{base}/auth/sign-in"] and query["id_token_hint"]
        assert 'ods_session=""' in out.headers["set-cookie"]
        assert world.api.resources.catalog.get_login_session(session_id(cookie), datetime.now(UTC)) is None

        with httpx.Client(cookies={"ods_session": cookie}) as stale:
            assert stale.get(f"{base}/api/v1/datasets").status_code == 401
        again = browser.post(f"{base}/auth/logout", data={"csrf_token": token})
        assert again.status_code == 303 and again.headers["location"] == "/auth/sign-in"  # idempotent
    rows = world.audit(action="auth.logout")
    assert {(row["outcome"], row["status_code"]) for row in rows} >= {("refused", 403), ("allowed", 200)}
    assert any(row["subject"] == "victor" for row in rows if row["outcome"] == "allowed")


def test_a_server_without_an_issuer_has_no_login(tmp_path: Path) -> None:
    with running_api(load_settings(home=tmp_path / "ods-home")) as api:
        answer = httpx.get(f"{api.base_url}/auth/login")
        assert answer.status_code == 404 and "ODS_AUTH__CONSOLE_CLIENT_ID" in answer.json()["message"]
        signed_out = httpx.get(f"{api.base_url}/api/v1/datasets", timeout=60)
        assert signed_out.status_code == 200  # the local profile's loopback admin needs no login


def test_a_refused_refresh_ends_the_session(world: LoginWorld) -> None:
    api = world.refreshing
    catalog = api.resources.catalog
    with world.browser() as browser:
        cookie = world.login(browser, "alice", api=api)
        row = catalog.get_login_session(session_id(cookie), datetime.now(UTC))
        assert row is not None
        # the provider no longer honours the session's refresh token (revoked, expired, its session ended)
        tokens = {**unseal(cookie, row.sealed), "refresh_token": "revoked-by-the-provider"}
        catalog.put_login_session(replace(row, sealed=seal(cookie, tokens)))

        api_call = browser.get(f"{api.base_url}/api/v1/datasets")
        assert api_call.status_code == 401 and "session has ended" in api_call.json()["message"]
        assert catalog.get_login_session(session_id(cookie), datetime.now(UTC)) is None
        page = browser.get(f"{api.base_url}/console/models")
        assert page.status_code == 303 and page.headers["location"].startswith("/auth/sign-in?next=")
