"""The console's sign-in in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against a
real OpenID provider (node's oidc-provider, its own login form): a signed-out browser is sent to the
sign-in page, signs in through the provider, sees the user menu with its tenant and roles; a viewer sees
no upload or re-sync control and is refused when it calls the route anyway; an engineer sees them; sign
out ends the session at the server and at the provider.

Pages are screenshotted at 1280 and 390 px wide under ``ODS_CONSOLE_SCREENSHOTS`` (or the test's temporary
folder); a console error on a console page fails the test. Requests to any host but this machine are
aborted (the provider's pages ask for web fonts). Without chromium or playwright the tests skip with the
reason, except under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.api_server import KB, RunningApi, served_platform
from tests.support.console_browser import (
    WIDTHS,
    browser_or_skip,
    launch,
    local_context,
    screenshots_folder,
    sign_in_through_provider,
    watched_page,
)
from tests.support.oidc_provider import OidcProvider, ProviderUser, console_auth, new_signing_key

USERS = (
    ProviderUser(
        "vera", tenant="default", realm_roles=("data_viewer", "ml_viewer"), client_roles=("app_user",)
    ),
    ProviderUser(
        "erin",
        tenant="default",
        realm_roles=("data_engineer", "ml_engineer"),
        client_roles=("app_developer",),
    ),
)


@dataclass(frozen=True)
class SignInWorld:
    provider: OidcProvider
    api: RunningApi
    page: Any
    shots: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInWorld]:
    sync_playwright = browser_or_skip()  # before the platform is built: a skip costs nothing
    root = tmp_path_factory.mktemp("console-login")
    provider = OidcProvider.start(root / "provider", [], [new_signing_key("key-a")], users=USERS)
    auth = console_auth(provider.issuer)
    shots = screenshots_folder(tmp_path_factory)
    try:
        with served_platform(root, auth=auth) as api, sync_playwright() as playwright:
            browser = launch(playwright)
            context = local_context(browser, api.base_url)
            page = watched_page(context, shots)
            yield SignInWorld(provider, api, page, shots)
            context.close()
            browser.close()
    finally:
        provider.stop()


def _shoot(world: SignInWorld, name: str) -> None:
    """No console error on this console page, then its screenshots at both widths."""
    page = world.page
    assert page.errors == [], f"console errors on {page.url}: {page.errors}"
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(world.shots / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def _sign_in(world: SignInWorld, user: str, start: str = "/") -> None:
    """From a signed-out ``start`` page, through the sign-in page and the provider's form, back to it."""
    page = world.page
    page.goto(start)
    assert urlsplit(page.url).path == "/auth/sign-in"
    _shoot(world, "sign-in")
    sign_in_through_provider(page, world.provider.issuer, user, start)


def _who(world: SignInWorld) -> str:
    text: str = world.page.locator("header .who").inner_text()
    return text


def test_a_viewer_signs_in_sees_its_menu_but_no_write_control_and_signs_out(world: SignInWorld) -> None:
    page = world.page
    _sign_in(world, "vera")
    who = _who(world)
    assert "vera" in who and "tenant default" in who and "data_viewer" in who and "app_user" in who
    _shoot(world, "home-viewer")

    page.goto(f"/console/knowledge-bases/{KB}")
    assert page.locator("h1").first.inner_text()
    assert page.locator("form[data-upload]").count() == 0
    assert page.get_by_role("button", name="Re-sync with the source").count() == 0
    _shoot(world, "knowledge-base-viewer")
    # the route refuses the viewer anyway (the CSRF header is sent by csrf.js: the refusal is the role's)
    refused = page.evaluate(
        """async (kb) => {
            const answer = await fetch(`/api/v1/knowledge-bases/${kb}/sync`, {method: "POST"});
            return [answer.status, (await answer.json()).message];
        }""",
        KB,
    )
    assert refused[0] == 403 and "knowledge.edit" in refused[1] and "CSRF" not in refused[1]
    page.errors.clear()  # Chromium logs the refused fetch as a console error

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{world.provider.issuer}/session/end**")  # through the signed-out page's refresh
    page.locator("button[name=logout][value=yes]").click()
    page.wait_for_url(f"{world.api.base_url}/auth/sign-in**")
    page.errors.clear()
    assert not [cookie for cookie in page.context.cookies() if cookie["name"] == "ods_session"]
    page.goto("/console/datasets")
    assert urlsplit(page.url).path == "/auth/sign-in"


def test_an_engineer_sees_the_write_controls(world: SignInWorld) -> None:
    page = world.page
    _sign_in(world, "erin", start=f"/console/knowledge-bases/{KB}")
    who = _who(world)
    assert "erin" in who and "data_engineer" in who and "app_developer" in who
    assert page.locator("form[data-upload]").count() == 1
    assert page.get_by_role("button", name="Re-sync with the source").count() == 1
    # csrf.js adds the session's CSRF token to the console's writes, by fetch and by XMLHttpRequest (uploads)
    statuses = page.evaluate(
        """async () => {
            const body = JSON.stringify({sql: "SELECT 1"});
            const headers = {"Content-Type": "application/json"};
            const byFetch = (await fetch("/api/v1/query/validate", {method: "POST", headers, body})).status;
            const byXhr = await new Promise((resolve) => {
                const request = new XMLHttpRequest();
                request.open("POST", "/api/v1/query/validate");
                request.setRequestHeader("Content-Type", "application/json");
                request.onload = () => resolve(request.status);
                request.send(body);
            });
            return [byFetch, byXhr];
        }"""
    )
    assert statuses == [200, 200]
    session = [cookie for cookie in page.context.cookies() if cookie["name"] == "ods_session"]
    assert len(session) == 1 and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax"
    _shoot(world, "knowledge-base-engineer")
