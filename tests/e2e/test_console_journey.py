"""A user's journey through the web console, in a real headless Chromium, over a real `ods serve` process
beside a real Prefect server; then a user of another tenant, who sees none of it.

Alice (tenant ``default``) creates a knowledge base, drops two documents on its upload zone and watches
them become indexed, asks a question and opens its citation's passage, asks a data question and sees the
SQL and its table, reopens the conversation from the list, opens the citation's passage again and renames
the conversation, opens a dataset's lineage graph and her knowledge base's, edits a spec and sees its
validation error inline, and runs a deployment from its form until the run shows on the pipelines page.
Bob (tenant ``acme``) then finds no dataset, document, knowledge base or conversation of Alice's, and her
pages' addresses answer as missing.

Both sign in as a person does on the cluster profile: through the real OpenID provider (node's
oidc-provider, its own login form; authorization code + PKCE), after which the browser holds only the
session cookie and sends the session's CSRF token on its writes: no API key or token reaches the browser.
Alice holds the roles that upload, ask, query and run (platform_admin, data_admin, ml_admin, app_admin),
Bob data_admin, ml_admin and app_admin (no platform role) in tenant ``acme``. Bob also asks the OpenAI-compatible gateway
with an API key of ``acme`` through the official ``openai`` client: a ``kb:`` model over Alice's
knowledge base and a ``sql:`` model over her dataset answer "not found". Every page is checked (no console error, no broken same-origin link, nothing wider than the
window) and screenshotted at 1280 and 390 px as ``journey-*`` under ``ODS_CONSOLE_SCREENSHOTS``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
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
    local_context,
    screenshots_folder,
    sign_in_through_provider,
    watched_page,
)
from tests.support.oidc_provider import OidcProvider, ProviderUser, console_auth, new_signing_key
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


USERS = (
    ProviderUser(
        "alice",
        tenant="default",
        realm_roles=("platform_admin", "data_admin", "ml_admin"),
        client_roles=("app_admin",),
    ),
    ProviderUser("bob", tenant="acme", realm_roles=("data_admin", "ml_admin"), client_roles=("app_admin",)),
)


@dataclass(frozen=True)
class Platform:
    base_url: str
    issuer: str
    """The OpenID provider both users sign in through."""
    bob_key: str
    """An API key of tenant acme, for Bob's calls to the OpenAI-compatible gateway."""


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
        bob_key = create_api_key(catalog, "bob-app", roles=["ml_admin", "app_admin"], tenant="acme").key
    provider = OidcProvider.start(root / "provider", [], [new_signing_key("journey")], users=USERS)
    auth = {f"ODS_AUTH__{name.upper()}": value for name, value in console_auth(provider.issuer).items()}
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
            {**serve_env(root, **env, **auth), **QUIET, "PREFECT_API_URL": prefect.api}, root / "serve.log"
        )
        try:
            server.start()
            yield Platform(server.base_url, provider.issuer, bob_key)
        finally:
            server.close()
            provider.stop()


@pytest.fixture(scope="module")
def browser(sync_playwright: Any, platform: Platform) -> Iterator[Any]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


def signed_in(browser: Any, platform: Platform, user: str, shots: Path) -> Any:
    """A page of a fresh browser context signed in as ``user`` through the provider's login form: from
    then on the session cookie (and the CSRF token csrf.js sends) is all the browser holds."""
    page = watched_page(local_context(browser, platform.base_url), shots)
    sign_in_through_provider(page, platform.issuer, user)
    assert "ods_session" in {cookie["name"] for cookie in page.context.cookies()}
    return page


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
        status, data = page.evaluate(  # a write of the console: fetch, with the session's CSRF token
            """async () => {
                const answer = await fetch("/api/v1/query/execute", {method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({sql: "SELECT * FROM sales"})});
                return [answer.status, (await answer.json()).data];
            }"""
        )
        assert status in (400, 404) and data is None, (status, data)  # no rows of hers
        page.errors.clear()  # Chromium logs the refused fetch as a console error
        for path in ("/api/v1/datasets", "/api/v1/knowledge-bases", "/api/v1/conversations"):
            answer = page.request.get(path).json()["data"]
            assert (answer["items"] if isinstance(answer, dict) else answer) == [], (path, answer)
    finally:
        page.context.close()


def test_bob_asks_the_gateway_about_alices_knowledge_base_and_table(platform: Platform) -> None:
    """Bob's application, with an API key of tenant acme and the official client: Alice's knowledge base
    and dataset are not among its models, and asking them answers "not found", never her passages or
    rows."""
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=platform.bob_key, max_retries=0)
    models = [model.id for model in client.models.list()]
    assert not [name for name in models if JOURNEY_KB in name or KB in name or DATASET in name], models
    for model, question in (
        (f"kb:{JOURNEY_KB}", VACATION_QUESTION),
        (f"kb:{KB}", VACATION_QUESTION),
        (f"sql:{DATASET}", "How many orders are there per region?"),
        (f"kb:{JOURNEY_KB}+sql:{DATASET}", "How many orders are there per region?"),
    ):
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
        assert "vacation" not in str(missing.value) and "region" not in str(missing.value), missing.value
