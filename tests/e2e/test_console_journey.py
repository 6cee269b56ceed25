"""A user's journey through the web console, in a real headless Chromium, over a real `ods serve` process
beside a real Prefect server; then a user of another tenant, who sees none of it.

Alice (tenant ``default``) creates a knowledge base, drops two documents on its upload zone and watches
them become indexed, asks a question and opens its citation's passage, asks a data question and sees the
SQL and its table, reopens the conversation from the list, opens the citation's passage again and renames
the conversation, opens a dataset's lineage graph and her knowledge base's, edits a spec and sees its
validation error inline, and runs a deployment from its form until the run shows on the pipelines page.
Bob (tenant ``acme``) then finds no dataset, document, knowledge base or conversation of Alice's, and her
pages' addresses answer as missing.

Both sign in with an API key of their tenant (``ods keys create --tenant``), sent by the browser as a
bearer token. Every page is checked (no console error, no broken same-origin link, nothing wider than the
window) and screenshotted at 1280 and 390 px as ``journey-*`` under ``ODS_CONSOLE_SCREENSHOTS``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ods.factories import open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_process import ServeProcess, serve_env
from tests.support.api_server import DATASET, KB
from tests.support.console_browser import (
    VACATION_QUESTION,
    ask_a_data_question,
    ask_and_open_the_citation,
    browser_or_skip,
    check_page,
    create_kb_and_upload_two_documents,
    launch,
    screenshots_folder,
    watched_page,
)
from tests.support.prefect_server import QUIET, running_prefect_server

JOURNEY_KB = "journey"
SCHEMA = {
    "title": "Parameters",
    "type": "object",
    "properties": {"deep": {"title": "deep", "type": "boolean", "default": False, "position": 0}},
}
SAMPLE = (
    "from ods.settings import load_settings; from tests.support.api_server import sample_platform; "
    "root = Path(sys.argv[1]); sample_platform(root, load_settings(home=root / 'ods-home'))"
)
BAD_SPEC = """name: journey_orders
source:
  uri: journey_orders.csv
steps:
  - coerce: {column: amount, type: nonsense}
"""


@dataclass(frozen=True)
class Platform:
    base_url: str
    keys: dict[str, str]
    """The API key of each user: alice (tenant default), bob (tenant acme)."""


@pytest.fixture(scope="module")
def sync_playwright() -> Any:
    return browser_or_skip()  # before the platform is built: a skip costs nothing


@pytest.fixture(scope="module")
def platform(sync_playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("journey")
    env = {"ODS_ANSWER__STYLE": "extractive", "ODS_API__MAX_UPLOAD_BYTES": str(8 * 1024 * 1024)}
    # The policies knowledge base and the sales dataset (tenant default), written by a process of its own:
    # the Milvus Lite file it opens must be free for the server.
    subprocess.run(
        [sys.executable, "-c", f"import sys; from pathlib import Path; {SAMPLE}", str(root)],
        check=True,
        env=serve_env(root),
    )
    settings = load_settings(home=root / "ods-home")
    with open_catalog(settings) as catalog:
        keys = {
            "alice": create_api_key(catalog, "alice", roles=["super_admin"], tenant="default").key,
            "bob": create_api_key(catalog, "bob", roles=["super_admin"], tenant="acme").key,
        }
    with running_prefect_server(root / "prefect") as prefect:
        flow = prefect.post("/flows/", {"name": "check-health"})  # prefect.yaml's names
        prefect.post(
            "/deployments/",
            {
                "name": "check-health",
                "flow_id": flow["id"],
                "parameters": {"deep": False},
                "parameter_openapi_schema": SCHEMA,
                "enforce_parameter_schema": True,
            },
        )
        server = ServeProcess(
            {**serve_env(root, **env), **QUIET, "PREFECT_API_URL": prefect.api}, root / "serve.log"
        )
        server.start()
        try:
            yield Platform(server.base_url, keys)
        finally:
            server.close()


@pytest.fixture(scope="module")
def browser(sync_playwright: Any, platform: Platform) -> Iterator[Any]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


def signed_in(browser: Any, platform: Platform, user: str, shots: Path) -> Any:
    context = browser.new_context(
        base_url=platform.base_url,
        viewport={"width": 1280, "height": 900},
        extra_http_headers={"Authorization": f"Bearer {platform.keys[user]}"},
    )
    return watched_page(context, shots)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshots_folder(tmp_path_factory)  # read once: tests run with the ODS_ variables cleared


@pytest.fixture(scope="module")
def alice(browser: Any, platform: Platform, shots: Path) -> Iterator[Any]:
    page = signed_in(browser, platform, "alice", shots)
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def journey() -> dict[str, str]:
    """What Alice's steps made, for Bob's checks (filled as the tests run, in order)."""
    return {}


def test_alice_uploads_two_documents_and_watches_them_become_indexed(
    alice: Any, tmp_path: Path, journey: dict[str, str]
) -> None:
    page = alice
    page.goto("/")
    assert "default" in page.locator(".who").inner_text()
    check_page(page, "journey-home")
    page.get_by_role("link", name="Knowledge bases").first.click()
    names = create_kb_and_upload_two_documents(page, JOURNEY_KB, tmp_path, drop=True)
    journey["documents"] = " ".join(names)
    check_page(page, "journey-knowledge-base")


@pytest.mark.timeout(900)  # the packaged model writes the SQL: minutes on a busy 2-core box
def test_alice_asks_opens_the_citation_then_asks_a_data_question(alice: Any, journey: dict[str, str]) -> None:
    page = alice
    page.get_by_role("link", name="Chat").first.click()
    ask_and_open_the_citation(page, JOURNEY_KB)
    page.wait_for_url("**/console/chat?c=*")
    journey["conversation"] = page.url.rsplit("c=", 1)[1]

    ask_a_data_question(page, DATASET)  # a follow-up in the same conversation
    check_page(page, "journey-chat")


def test_alice_reopens_the_conversation_from_the_list_and_renames_it(
    alice: Any, journey: dict[str, str]
) -> None:
    page = alice
    page.goto("/console/models")  # away, then back through the conversation list
    page.get_by_role("link", name="Chat").first.click()
    item = page.locator("[data-conversation-list] li", has_text=VACATION_QUESTION[:40]).first
    item.get_by_role("link").click()
    page.wait_for_url(f"**/console/chat?c={journey['conversation']}")
    page.locator(".message-assistant").nth(1).wait_for()
    assert VACATION_QUESTION in page.locator("[data-messages]").inner_text()
    assert page.locator(".message-assistant [data-sql-text]").count() == 1
    page.locator(".message-assistant button.cite").first.click()  # the stored answer's passage, read again
    page.locator("[data-panel-passage]", has_text="27 vacation days").wait_for()
    item = page.locator("[data-conversation-list] li.current")
    item.get_by_text("Rename").click()
    item.get_by_label("Title").fill("Alice's vacation question")
    item.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Alice's vacation question").wait_for()
    assert page.locator("[data-conversation-list] a", has_text="Alice's vacation question").count() == 1
    check_page(page, "journey-conversation")


def test_alice_opens_a_dataset_lineage_and_the_knowledge_base_lineage(alice: Any) -> None:
    page = alice
    page.get_by_role("link", name="Datasets").first.click()
    page.get_by_role("link", name=DATASET, exact=True).click()
    graph = page.locator("svg[data-testid=lineage]")
    graph.wait_for()
    labels = graph.locator("text").all_text_contents()
    assert f"{DATASET}@1" in labels and any(label.endswith(".csv") for label in labels)
    check_page(page, "journey-dataset")
    page.goto(f"/console/knowledge-bases/{JOURNEY_KB}/lineage")
    labels = page.locator("svg[data-testid=kb-lineage] text").all_text_contents()
    assert "holidays.md" in labels and any(label.startswith("Alice's vacation") for label in labels)
    check_page(page, "journey-kb-lineage")


def test_alice_sees_a_spec_error_inline(alice: Any) -> None:
    page = alice
    page.get_by_role("link", name="Dataset specs").first.click()
    page.get_by_label("YAML").fill(BAD_SPEC)
    page.get_by_role("button", name="Check").click()
    problem = page.locator("[data-problem]")
    problem.first.wait_for()
    assert "line 5" in problem.first.inner_text() and "nonsense" in problem.first.inner_text()
    check_page(page, "journey-spec-error")


def test_alice_runs_a_deployment_from_its_form_and_the_run_shows(alice: Any) -> None:
    page = alice
    page.get_by_role("link", name="Pipelines").first.click()
    row = page.locator("tr[data-deployment=check-health]")
    row.get_by_text("Run check-health").click()
    row.get_by_label("deep").check()
    row.get_by_role("button", name="Start run").click()
    started = row.locator("[data-run-started]")
    started.filter(has_text="created").wait_for()
    assert "check-health/check-health" in started.inner_text()
    check_page(page, "journey-pipelines-run-started")
    page.reload()
    runs = page.locator("tr[data-deployment=check-health] td").last
    assert "check-health-console-" in runs.inner_text() and "Scheduled" in runs.inner_text()
    check_page(page, "journey-pipelines")


def test_bob_of_another_tenant_sees_none_of_it(
    browser: Any, platform: Platform, journey: dict[str, str], shots: Path
) -> None:
    """Last: Bob's pages list nothing of Alice's, and her pages' addresses answer as missing."""
    assert journey.get("conversation"), "Alice's steps ran first"
    page = signed_in(browser, platform, "bob", shots)
    try:
        page.goto("/")
        assert "acme" in page.locator(".who").inner_text()
        assert page.locator("#questions-h + ul").count() == 0  # no recent question
        runs = page.locator("section[aria-labelledby=runs-h]").inner_text()
        assert JOURNEY_KB not in runs and "ingest" not in runs, runs  # nor Alice's ingest runs
        check_page(page, "journey-bob-home")
        page.goto("/console/datasets")
        assert page.get_by_role("link", name=DATASET, exact=True).count() == 0
        page.goto("/console/knowledge-bases")
        text = page.locator("main").inner_text()
        assert JOURNEY_KB not in text and KB not in text
        check_page(page, "journey-bob-knowledge-bases")
        page.goto("/console/chat")
        assert page.locator("[data-conversation-list] li").count() == 0
        assert page.get_by_label("Knowledge base").locator("option").all_text_contents() == ["none"]
        check_page(page, "journey-bob-chat")
        for url, missing in (
            (f"/console/chat?c={journey['conversation']}", "no conversation with id"),
            (f"/console/knowledge-bases/{JOURNEY_KB}", f"no knowledge base named '{JOURNEY_KB}'"),
            (f"/console/knowledge-bases/{JOURNEY_KB}/lineage", f"no knowledge base named '{JOURNEY_KB}'"),
            (f"/console/datasets/{DATASET}", f"no dataset named '{DATASET}'"),
        ):
            page.goto(url)
            main = page.locator("main").inner_text()
            assert missing in main and "vacation" not in main, (url, main)
            for document in journey["documents"].split():
                assert document not in main, (url, main)
        page.goto("/console/metadata?db=datasets")
        assert DATASET not in page.locator("main").inner_text()
        check_page(page, "journey-bob-metadata")
        assert page.errors == [], page.errors
        query = page.request.post("/api/v1/query/execute", data={"sql": "SELECT * FROM sales"})
        assert query.status in (400, 404) and query.json()["data"] is None, query.text()  # no rows of hers
        for path in ("/api/v1/datasets", "/api/v1/knowledge-bases", "/api/v1/conversations"):
            answer = page.request.get(path).json()["data"]
            assert (answer["items"] if isinstance(answer, dict) else answer) == [], (path, answer)
    finally:
        page.context.close()
