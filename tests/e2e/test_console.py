"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Playwright), over the real
server of the API tests: home, datasets and the lineage graph, a knowledge base taking two uploads until
they are indexed, chat with a clickable citation, a data question with its SQL and table, the conversation
reopened from the list, models and metadata.

Every page is screenshotted at 1280 and 390 px wide under ``ODS_CONSOLE_SCREENSHOTS`` (or the test's
temporary folder); a console error or a same-origin link that does not answer 200 fails the test. One
browser for the module. Without chromium or playwright the tests skip with the reason, except under
``CI=true`` (``make browser`` installs chromium where it can).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ods.factories import build_object_store, open_catalog
from ods.stages.api_keys import create_api_key
from tests.support.api_server import DATASET, RunningApi, served_platform
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

UPLOADS_KB = "handbook"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    root = tmp_path_factory.mktemp("console")
    with served_platform(root, api={"max_body_bytes": 16 * 1024, "max_upload_bytes": 8 * 1024 * 1024}) as api:
        with open_catalog(api.settings) as catalog:  # a model trained on the dataset, for the lineage
            dataset_version = catalog.get_dataset_version(DATASET, 1)
            model = catalog.add_model_version(
                "churn",
                trainer="tabular",
                params={"target": "returned"},
                metrics={"f1": 0.81},
                artifact_uri="file:///nowhere/churn/",
                dataset_version_id=dataset_version.id,
            )
            catalog.add_endpoint(
                model.id, backend="transformers", url="http://127.0.0.1:9/v1", status="stopped"
            )
        yield api


@pytest.fixture(scope="module")
def sync_playwright() -> Any:
    return browser_or_skip()  # before the platform is built: a skip costs nothing


@pytest.fixture(scope="module")
def browser_page(
    sync_playwright: Any, console: RunningApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context(base_url=console.base_url, viewport={"width": 1280, "height": 900})
        yield watched_page(context, screenshots_folder(tmp_path_factory))
        context.close()
        browser.close()


def test_home_then_a_dataset_version_with_its_lineage_graph(browser_page: Any) -> None:
    page = browser_page
    answer = page.goto("/")
    assert answer.status == 200
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert page.locator(".counts").inner_text().count("\n") >= 5
    assert "catalog" in page.locator("#health-h + ul").inner_text()
    page.keyboard.press("Tab")  # keyboard users start at the skip link, then the navigation
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    check_page(page, "home")

    page.get_by_role("link", name="Datasets").first.click()
    page.get_by_role("link", name=DATASET, exact=True).click()
    graph = page.locator("svg[data-testid=lineage]")
    graph.wait_for()
    labels = graph.locator("text").all_text_contents()
    assert "sales.csv" in labels and f"{DATASET}@1" in labels and "churn@1" in labels
    assert any(label.startswith("transformers #") for label in labels)
    assert graph.locator("path").count() >= 3  # source → dataset → model → endpoint
    assert "region" in page.locator("#profile-h + .scroll").inner_text()
    page.get_by_text("Edit or archive").click()
    page.get_by_label("Tags").fill("orders, demo")
    page.get_by_role("button", name="Save").click()
    page.locator(".tag", has_text="demo").first.wait_for()  # the page reloads with the new tags
    page.get_by_role("link", name="Next rows").click()
    page.wait_for_url("**offset=20")
    assert "rows 21–40 of" in page.locator(".pager").inner_text()
    check_page(page, "dataset")
    page.goto("/console/datasets?tags=demo")
    assert page.get_by_role("link", name=DATASET, exact=True).count() == 1
    check_page(page, "datasets")


def test_two_uploaded_documents_become_indexed(browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    page.goto("/console/knowledge-bases")
    check_page(page, "knowledge-bases")
    create_kb_and_upload_two_documents(page, UPLOADS_KB, tmp_path)
    page.get_by_label("Query").fill("vacation days")
    page.get_by_role("button", name="Search").click()
    assert "27 vacation days" in page.locator(".hits").inner_text()  # waits for the results page
    check_page(page, "knowledge-base")
    # the filters: one document, how many chunks, the least score
    page.get_by_label("In document").select_option(label="expenses.txt")
    page.get_by_label("Chunks").fill("3")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**document=*expenses.txt*")
    hits = page.locator(".hits > li")
    assert 1 <= hits.count() <= 3 and "27 vacation days" not in page.locator(".hits").inner_text()
    assert all("expenses.txt" in hit for hit in hits.locator("strong").all_inner_texts())
    page.get_by_label("Least score").fill("1000")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**min_score=1000*")
    assert page.locator(".hits").inner_text().strip() == "No chunk matches."
    check_page(page, "knowledge-base-search-filters")
    # heading and page: holidays.md's one heading; neither upload has pages
    page.goto(f"/console/knowledge-bases/{UPLOADS_KB}?q=vacation+days")
    page.get_by_label("Under heading").fill("Holidays")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**heading=Holidays*")
    titles = page.locator(".hits > li > p").all_inner_texts()
    assert titles and all(title.startswith("holidays.md · Holidays") for title in titles), titles
    page.get_by_label("On page").fill("1")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**page=1*")
    assert page.locator(".hits").inner_text().strip() == "No chunk matches."


@pytest.mark.timeout(900)  # the packaged model writes the SQL: minutes on a busy 2-core box
def test_chat_streams_an_answer_with_a_citation_and_a_data_question_with_sql(browser_page: Any) -> None:
    page = browser_page
    page.goto("/console/chat")
    ask_and_open_the_citation(page, UPLOADS_KB)
    assert "/console/chat?c=" in page.url

    ask_a_data_question(page, DATASET)
    check_page(page, "chat")

    page.goto("/console/models")  # away, then back through the conversation list
    page.goto("/console/chat")
    page.get_by_role("link", name=VACATION_QUESTION[:40]).first.click()
    page.locator(".message-assistant").first.wait_for()
    assert VACATION_QUESTION in page.locator("[data-messages]").inner_text()
    assert page.locator(".message-assistant [data-sql-text]").count() == 1
    check_page(page, "conversation")


def test_a_conversation_is_renamed_and_the_kb_re_synced_and_its_lineage_drawn(browser_page: Any) -> None:
    page = browser_page
    page.goto("/console/chat")
    item = page.locator("[data-conversation-list] li", has_text="How many vacation days").first
    item.get_by_text("Rename").click()
    item.get_by_label("Title").fill("Vacation allowance")
    item.get_by_role("button", name="Save").click()
    page.wait_for_url("**/console/chat?c=*")
    page.get_by_role("heading", name="Vacation allowance").wait_for()
    assert page.locator("[data-conversation-list] a", has_text="Vacation allowance").count() == 1
    check_page(page, "conversation-renamed")

    page.goto(f"/console/knowledge-bases/{UPLOADS_KB}")
    page.get_by_role("button", name="Re-sync with the source").click()
    state = page.locator("[data-sync-state][data-sync-done]")
    state.wait_for()
    assert state.inner_text() == "Sync completed: 0 indexed, 2 unchanged, 0 quarantined, 0 deleted."
    page.get_by_role("link", name="Lineage: documents, cited chunks, conversations").click()
    graph = page.locator("svg[data-testid=kb-lineage]")
    graph.wait_for()
    labels = graph.locator("text").all_text_contents()
    assert "holidays.md" in labels and "expenses.txt" in labels and "Vacation allowance" in labels
    assert any(label.startswith("chunk #") for label in labels)
    assert graph.locator("path").count() >= 2  # document → chunk → conversation
    assert "Vacation allowance" in page.locator("[data-citations]").inner_text()
    check_page(page, "kb-lineage")


def test_models_and_metadata_pages(browser_page: Any) -> None:
    page = browser_page
    page.goto("/")  # home once runs and questions exist (the README's picture)
    assert "Vacation allowance" in page.locator("#questions-h + ul").inner_text()
    assert "ingest" in page.locator("#runs-h ~ ul").inner_text()
    check_page(page, "home-in-use")
    page.goto("/console/models")
    assert "f1 0.81" in page.locator("#model-churn").inner_text()
    check_page(page, "models")

    page.goto("/console/metadata")
    page.get_by_role("link", name="datasets", exact=True).click()
    page.get_by_role("link", name=DATASET, exact=True).click()
    assert "email" in page.locator("#columns-h + .scroll").inner_text()
    page.get_by_role("button", name="Validate").click()
    assert "LIMIT" in page.locator("[data-sql-result] [data-sql-text]").inner_text()
    page.get_by_role("button", name="Execute").click()
    page.locator("[data-sql-result] table").wait_for()
    page.get_by_label("Query (read-only; the guard checks it first)").fill("DELETE FROM sales")
    page.get_by_role("button", name="Validate").click()
    assert "Refused" in page.locator("[data-sql-result] .error").inner_text()
    page.get_by_label("Describe the data").fill("orders revenue by region")
    page.get_by_role("button", name="Search").click()
    assert "datasets.sales" in page.locator("#search-h ~ ol").inner_text()
    check_page(page, "metadata")


# console.js binds its controls at DOMContentLoaded; this makes that 1.5 s late, as on a slow link.
# It also counts the page's loads, so that a native submit (a second load) ends the test's wait.
_LATE_SCRIPT = """(() => {
  sessionStorage.loads = String(Number(sessionStorage.loads || 0) + 1);
  const add = Document.prototype.addEventListener;
  Document.prototype.addEventListener = function (type, listener, options) {
    const late = type === "DOMContentLoaded" ? () => setTimeout(listener, 1500) : listener;
    return add.call(this, type, late, options);
  };
})()"""


def test_a_click_made_before_the_script_has_bound_the_form_waits_for_it(browser_page: Any) -> None:
    # Before console.css held such clicks back, Validate submitted the form natively (the page reloaded
    # with ?sql=…&action=validate and showed no result): a CI run once hung here for 300 s.
    page = watched_page(browser_page.context, browser_page.shots)
    page.add_init_script(_LATE_SCRIPT)
    page.goto(f"/console/metadata?db=datasets&table={DATASET}")
    assert page.evaluate("'ready' in document.documentElement.dataset") is False
    page.get_by_role("button", name="Validate").click()
    page.wait_for_function(
        "() => document.querySelector('[data-sql-result] [data-sql-text]') || sessionStorage.loads !== '1'"
    )
    assert page.evaluate("sessionStorage.loads") == "1", f"the form was submitted natively: {page.url}"
    assert "LIMIT" in page.locator("[data-sql-result] [data-sql-text]").inner_text()
    assert page.errors == []
    page.close()


EDITED_SPEC = """name: orders_edit
source:
  uri: orders_edit.csv
steps:
  - deduplicate: {}
  - coerce: {column: amount, type: flaot}
expectations:
  - not_null: {column: id}
  - in_set: {column: status, values: [paid, pending]}
"""


def test_a_spec_is_checked_dry_run_and_saved_under_the_watched_prefix(
    browser_page: Any, console: RunningApi
) -> None:
    store = build_object_store(console.settings)
    store.put_bytes("raw/orders_edit.csv", b"id,status,amount\n1,paid,10.5\n1,paid,10.5\n2,refunded,x\n")
    page = browser_page
    page.goto("/console/specs")
    editor = page.get_by_label("YAML")
    editor.fill(EDITED_SPEC)
    page.get_by_role("button", name="Check").click()
    problem = page.locator("[data-problem]")
    problem.first.wait_for()
    assert problem.count() == 1
    assert "line 6, steps[1].coerce.type" in problem.inner_text() and "flaot" in problem.inner_text()
    problem.get_by_role("button").click()  # selects the line at fault in the editor
    assert page.evaluate("document.activeElement.id") == "spec-text"
    assert "flaot" in page.evaluate(
        "(t => t.value.slice(t.selectionStart, t.selectionEnd))(document.activeElement)"
    )
    check_page(page, "spec-editor-problem")

    editor.fill(EDITED_SPEC.replace("flaot", "float"))
    page.get_by_role("button", name="Dry run").click()
    summary = page.locator("[data-dry-run-summary]")
    summary.wait_for()
    assert "3 rows of" in summary.inner_text() and "cleaned to 2" in summary.inner_text()
    assert "some expectations failed" in summary.inner_text()
    results = page.locator("[data-dry-run] table").nth(1).inner_text()
    assert "not_null" in results and "pass" in results and "in_set" in results and "fail" in results
    assert "refunded" in page.locator("[data-dry-run] table").nth(2).inner_text()  # the cleaned rows
    check_page(page, "spec-editor-dry-run")

    page.get_by_role("button", name="Save").click()
    page.locator("[data-spec-saved]").wait_for()
    assert store.get_bytes("raw/orders_edit.yaml").decode() == EDITED_SPEC.replace("flaot", "float")
    page.goto("/console/specs?name=orders_edit")  # the saved spec opens again
    assert "type: float" in page.get_by_label("YAML").input_value()
    check_page(page, "spec-editor")


def test_the_pipelines_page_draws_prefect_yaml_as_a_graph(browser_page: Any) -> None:
    page = browser_page
    page.goto("/")
    page.get_by_role("link", name="Pipelines").click()
    graph = page.locator("svg[data-testid=pipelines]")
    graph.wait_for()
    labels = graph.locator("text").all_text_contents()
    for label in ("watch-bucket", "prepare-dataset", "ods.dataset.registered", "train-model", "deploy-model"):
        assert label in labels, labels
    assert "ingest-documents" in labels and "every 1 min" in labels
    assert graph.locator("path").count() >= 12
    assert (
        page.locator("[data-no-prefect]").inner_text()
        == "No Prefect server: runs shown are the server's own."
    )
    assert page.locator("#server-runs-h").count() == 1  # /api/v1/runs in their place
    graph.locator("a[href='#deployment-prepare-dataset']").click()
    assert "ods.object.created" in page.locator("tr[data-deployment=prepare-dataset]").inner_text()
    check_page(page, "pipelines")


def test_a_role_sees_only_the_controls_it_may_use(browser_page: Any, console: RunningApi) -> None:
    """Last in the module: once a key exists, every caller needs credentials."""
    with open_catalog(console.settings) as catalog:
        key = create_api_key(catalog, "console-app-user", roles=["app_user"]).key
    assert browser_page.request.get("/").status == 401  # the keyless loopback browser is no admin now
    context = browser_page.context.browser.new_context(
        base_url=console.base_url, extra_http_headers={"Authorization": f"Bearer {key}"}
    )
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"/console/knowledge-bases/{UPLOADS_KB}")
        assert page.locator("tr[data-document='holidays.md']").count() == 1  # knowledge.view: yes
        assert page.locator("[data-upload], [data-action]").count() == 0  # knowledge.edit: no
        assert "app_user" in page.locator(".who").inner_text()
        page.goto("/console/knowledge-bases")
        assert page.get_by_role("button", name="Create").count() == 0
        page.goto("/console/datasets")
        assert "datasets.view needs one of the roles" in page.locator(".error").inner_text()
        page.goto("/console/metadata")
        assert page.get_by_role("button", name="Execute").count() == 0
        page.goto("/console/specs")
        assert page.get_by_role("button", name="Save").count() == 0  # datasets.create: no
        assert errors == []
    finally:
        context.close()
