"""The console's browser tests' shared parts: Debian's chromium through Playwright (or a visible skip, a
failure under ``CI=true``), a browser context that reaches this machine only, a page that records console
errors, the sign-in through the real OpenID provider's login form, and the per-page check (no console
error, every same-origin link answers 200, no element wider than the window, screenshots at 1280 and
390 px).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

CHROMIUM = os.environ.get("ODS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
WIDTHS = (1280, 390)


def browser_or_skip() -> Any:
    """Playwright's sync API, or a skip (a failure under CI=true) saying what is missing."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[dev]')"
    if problem is None and not Path(CHROMIUM).is_file():
        problem = f"no chromium at {CHROMIUM} (run `make browser` as root, or apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    return sync_playwright


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def local_context(browser: Any, base_url: str, width: int = WIDTHS[0]) -> Any:
    """A new context of ``browser`` on ``base_url`` whose requests to any host but this machine are
    aborted (the provider's pages ask for web fonts; the console asks for nothing outside)."""
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if urlsplit(route.request.url).hostname == "127.0.0.1" else route.abort()
        ),
    )
    return context


def sign_in_through_provider(page: Any, issuer: str, user: str, start: str = "/") -> None:
    """From a signed-out ``start`` page of the console (sent to ``/auth/sign-in``), through the provider
    at ``issuer`` (its own login form: the login names the user, any password) and back to ``start``,
    signed in by the session cookie. The provider's font requests, aborted, are not the console's errors."""
    page.goto(start)
    base = f"{urlsplit(page.url).scheme}://{urlsplit(page.url).netloc}"
    assert urlsplit(page.url).path == "/auth/sign-in", page.url
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.wait_for_url(f"{issuer}/interaction/**")
    page.fill("input[name=login]", user)
    page.fill("input[name=password]", "any password")
    page.locator("button[type=submit]").click()
    page.get_by_role("button", name="Continue").click()  # oidc-provider asks every native client's user
    page.wait_for_url(f"{base}{start}")
    page.errors.clear()


def watched_page(context: Any, shots: Path) -> Any:
    """A new page of ``context`` that records console errors and accepts dialogs; screenshots go to
    ``shots``."""
    page = context.new_page()
    page.set_default_timeout(0)  # waits end when the page changes; pytest-timeout stops a hang
    page.errors = []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.checked_links = set()
    page.shots = shots
    shots.mkdir(parents=True, exist_ok=True)
    return page


def screenshots_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ODS_CONSOLE_SCREENSHOTS`` (kept for review), else a temporary folder."""
    return Path(os.environ.get("ODS_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))


_WIDER_THAN_THE_WINDOW = """() => Array.from(document.querySelectorAll('body *'))
  .filter(e => !(e.parentElement && e.parentElement.closest('.scroll'))
    && e.getBoundingClientRect().right > window.innerWidth + 1)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8)
  .concat(document.documentElement.scrollWidth > window.innerWidth
    ? ['the page, ' + document.documentElement.scrollWidth + ' px'] : [])"""


def check_page(page: Any, name: str) -> None:
    """No console error so far, every same-origin link answers 200, screenshots at both widths."""
    assert page.errors == [], f"console errors on {page.url}: {page.errors}"
    origin = urlsplit(page.url).netloc
    for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
        url = urljoin(page.url, href).split("#", 1)[0]
        if urlsplit(url).netloc != origin or url in page.checked_links:
            continue
        answer = page.request.get(url)
        assert answer.status == 200, f"broken link {href} on {page.url}: {answer.status}"
        page.checked_links.add(url)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        wider = page.evaluate(_WIDER_THAN_THE_WINDOW)
        assert wider == [], f"{page.url} at {width} px: wider than the window: {wider}"
        page.screenshot(path=str(page.shots / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


# The steps both browser modules take, as a user takes them.

HOLIDAYS = "# Holidays\n\nEvery employee gets 27 vacation days per year, taken in whole days.\n"
EXPENSES = "Expenses\n\nTravel expenses are refunded within 14 days of the receipt being filed.\n"
VACATION_QUESTION = "How many vacation days does every employee get per year?"
REGION_QUESTION = "How many orders are there per region?"


_DROP = """([target, files]) => {
  const transfer = new DataTransfer();
  for (const [name, text] of files) transfer.items.add(new File([text], name, { type: "text/plain" }));
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
  }
}"""


def create_kb_and_upload_two_documents(
    page: Any, kb: str, folder: Path, *, drop: bool = False
) -> tuple[str, str]:
    """On the knowledge bases page: create ``kb``, then upload holidays.md and expenses.txt, picked in the
    file input or (``drop``) dropped on the drop zone as a user drags files onto it, and wait until the
    page (reloaded by the console) shows both indexed."""
    page.get_by_label("Name").fill(kb)  # the server uploads into knowledge bases it created
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(f"**/console/knowledge-bases/{kb}")
    names = ("holidays.md", "expenses.txt")
    for name, text in zip(names, (HOLIDAYS, EXPENSES), strict=True):
        (folder / name).write_text(text)
    if drop:
        zone = page.locator("form[data-upload]").element_handle()
        page.evaluate(_DROP, [zone, [[name, (folder / name).read_text()] for name in names]])
    else:
        page.get_by_label("Drop files here or choose them").set_input_files([str(folder / n) for n in names])
        page.get_by_role("button", name="Upload").click()
    for name in names:  # the page reloads once the ingest indexed both
        page.locator(
            f"tr[data-document='{name}'][data-status='indexed'], [data-upload-list] .error"
        ).first.wait_for()
        assert page.locator("[data-upload-list] .error").count() == 0, page.locator(
            "[data-upload-list]"
        ).inner_text()
    return names


def ask_and_open_the_citation(page: Any, kb: str) -> None:
    """On the chat page: ask the vacation question of ``kb``, click the answer's first citation and see
    the passage in the side panel."""
    page.get_by_label("Question").fill(VACATION_QUESTION)
    page.get_by_label("Knowledge base").select_option(kb)
    page.get_by_role("button", name="Ask").click()
    page.locator(".message-assistant button.cite").first.click()
    panel = page.locator("[data-citation-panel]")
    assert panel.is_visible()
    assert "27 vacation days" in panel.locator("[data-panel-passage]").inner_text()
    assert "holidays.md" in panel.inner_text()


def ask_a_data_question(page: Any, dataset: str) -> None:
    """On the chat page: ask the orders-per-region question of ``dataset`` in SQL mode and see the SQL
    and a result table."""
    page.get_by_label("Question").fill(REGION_QUESTION)
    page.get_by_label("Knowledge base").select_option("")
    page.get_by_label("Datasets").select_option(dataset)
    page.get_by_label("Mode").select_option("sql")
    page.get_by_role("button", name="Ask").click()
    table = page.locator("[data-result-table]").last
    table.wait_for()
    assert "SELECT" in page.locator(".message-assistant [data-sql-text]").last.inner_text().upper()
    assert table.locator("tbody tr").count() >= 1
