"""The dataset-spec editor's routes (``/api/v1/dataset-specs``) as a client meets them: check a spec (each
problem with its line and field), dry-run it on the first rows of its raw table with the prepare stage's own
cleaning and validation, and save it under the watched raw prefix, where the watcher classifies it as a spec.

One real server (uvicorn on a free loopback port) over an empty local platform (SQLite catalog, local
object store; no model is loaded).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ods.api.routes.dataset_specs import spec_key
from ods.domain.bucket_diff import classify_key
from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.watch import watch_layout
from tests.support.api_envelope import data, refused
from tests.support.api_server import RunningApi, running_api

ORDERS_CSV = b"""id,status,amount
1,paid,10.5
2,pending,3
2,pending,3
3,paid,not a number
4,refunded,12
"""
GOOD_SPEC = """name: orders
description: Shop orders
source:
  uri: orders.csv
steps:
  - deduplicate: {}
  - coerce: {column: amount, type: float}
expectations:
  - not_null: {column: id}
  - in_set: {column: status, values: [paid, pending]}
"""
TYPO_SPEC = GOOD_SPEC.replace(
    "coerce: {column: amount, type: float}", "coerce: {column: amount, type: flaot}"
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    settings = load_settings(home=tmp_path_factory.mktemp("api-dataset-specs") / "ods-home")
    with running_api(settings) as running:
        build_object_store(running.settings).put_bytes("raw/orders.csv", ORDERS_CSV)
        yield running


@pytest.fixture(scope="module")
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


def test_a_valid_spec_checks_clean(client: httpx.Client) -> None:
    check = data(client.post("/api/v1/dataset-specs/validate", json={"spec": GOOD_SPEC}))

    assert check == {"valid": True, "dataset": "orders", "problems": []}


def test_a_problem_is_reported_at_its_line_and_field(client: httpx.Client) -> None:
    check = data(client.post("/api/v1/dataset-specs/validate", json={"spec": TYPO_SPEC}))

    assert check["valid"] is False
    [problem] = check["problems"]
    assert problem["line"] == 7
    assert problem["field"] == "steps[1].coerce.type"
    assert "flaot" in problem["reason"]


def test_bad_yaml_names_its_line_and_column(client: httpx.Client) -> None:
    check = data(client.post("/api/v1/dataset-specs/validate", json={"spec": "name: orders\nsource: [uri\n"}))

    [problem] = check["problems"]
    assert problem["line"] is not None and problem["column"] is not None
    assert "invalid YAML" in problem["reason"]


def test_an_oversized_spec_is_refused_with_the_limit(client: httpx.Client) -> None:
    spec = GOOD_SPEC + "# " + "x" * 70_000 + "\n"
    check = data(client.post("/api/v1/dataset-specs/validate", json={"spec": spec}))

    assert check["valid"] is False
    assert "at most 65,536" in check["problems"][0]["reason"]


def test_a_dry_run_cleans_the_first_rows_and_checks_the_expectations(client: httpx.Client) -> None:
    run = data(client.post("/api/v1/dataset-specs/dry-run", json={"spec": GOOD_SPEC}))

    assert run["dataset"] == "orders"
    assert run["rows_read"] == 5 and run["rows_out"] == 4  # one duplicate row dropped
    steps = {step["rule"]: step for step in run["cleaning"]}  # the implicit ones as prepare runs them
    assert {"deduplicate", "coerce"} <= set(steps)
    coerce = steps["coerce"]
    assert coerce["unparseable"] == 1 and "not a number" in coerce["examples"]
    outcomes = {row["expectation"]: row for row in run["expectations"]}
    assert outcomes["not_null"]["success"] is True
    assert outcomes["in_set"]["success"] is False and outcomes["in_set"]["unexpected_count"] == 1
    assert run["success"] is False
    assert run["columns"] == ["id", "status", "amount"]
    assert run["preview"][0] == ["1", "paid", 10.5]  # read as text, amount coerced


def test_a_dry_run_reads_only_the_rows_asked_for(client: httpx.Client) -> None:
    run = data(client.post("/api/v1/dataset-specs/dry-run", json={"spec": GOOD_SPEC, "rows": 2}))

    assert run["rows_read"] == 2


def test_a_dry_run_refuses_a_bad_spec_an_unknown_source_and_a_host_file(client: httpx.Client) -> None:
    bad = refused(client.post("/api/v1/dataset-specs/dry-run", json={"spec": TYPO_SPEC}), 400, 40001)
    assert bad["details"]["field"] == "body.spec" and "line 7" in bad["message"]

    missing = GOOD_SPEC.replace("uri: orders.csv", "uri: nowhere.csv")
    unknown = refused(client.post("/api/v1/dataset-specs/dry-run", json={"spec": missing}), 404, 40401)
    assert "raw/nowhere.csv" in unknown["message"] and "upload" in unknown["message"]

    host = GOOD_SPEC.replace("uri: orders.csv", "uri: /etc/passwd")
    outside = refused(client.post("/api/v1/dataset-specs/dry-run", json={"spec": host}), 400, 40001)
    assert "not in the object store" in outside["message"]

    above = GOOD_SPEC.replace("uri: orders.csv", "uri: ../../orders.csv")
    escaped = refused(client.post("/api/v1/dataset-specs/dry-run", json={"spec": above}), 400, 40001)
    assert "outside the object store" in escaped["message"]


def test_a_dry_run_names_a_column_the_table_lacks(client: httpx.Client) -> None:
    spec = GOOD_SPEC.replace("not_null: {column: id}", "not_null: {column: order_id}")
    bad = refused(client.post("/api/v1/dataset-specs/dry-run", json={"spec": spec}), 400, 40001)

    assert "order_id" in bad["message"]


def test_save_puts_the_spec_under_the_watched_prefix_once(api: RunningApi, client: httpx.Client) -> None:
    saved = data(client.put("/api/v1/dataset-specs/orders", json={"spec": GOOD_SPEC}))

    assert saved["key"] == "raw/orders.yaml" and saved["changed"] is True
    store = build_object_store(api.settings)
    assert store.get_bytes("raw/orders.yaml").decode() == GOOD_SPEC
    role = classify_key(saved["key"], watch_layout(api.settings))
    assert role is not None and role.kind == "spec"  # the watcher starts prepare-dataset for it
    etag = store.stat("raw/orders.yaml").etag

    again = data(client.put("/api/v1/dataset-specs/orders", json={"spec": GOOD_SPEC}))
    assert again["changed"] is False and store.stat("raw/orders.yaml").etag == etag

    read = data(client.get("/api/v1/dataset-specs/orders"))
    assert read["spec"] == GOOD_SPEC


def test_save_refuses_a_bad_spec_another_name_and_an_unknown_source(client: httpx.Client) -> None:
    refused(client.put("/api/v1/dataset-specs/orders2", json={"spec": TYPO_SPEC}), 400, 40001)

    other = refused(client.put("/api/v1/dataset-specs/orders2", json={"spec": GOOD_SPEC}), 400, 40001)
    assert other["details"]["field"] == "body.spec.name" and "'orders'" in other["message"]

    missing = GOOD_SPEC.replace("name: orders", "name: lost").replace("uri: orders.csv", "uri: lost.csv")
    refused(client.put("/api/v1/dataset-specs/lost", json={"spec": missing}), 404, 40401)
    refused(client.get("/api/v1/dataset-specs/lost"), 404, 40401)

    refused(client.put("/api/v1/dataset-specs/Bad%20Name", json={"spec": GOOD_SPEC}), 400, 40001)


def test_a_name_another_tenant_holds_is_this_tenants_own(api: RunningApi, client: httpx.Client) -> None:
    # Names are unique per tenant (migration 0015): tenant "other"'s dataset "theirs" neither blocks the
    # caller's own "theirs" nor is read or overwritten through it.
    store = build_object_store(api.settings)
    theirs = b"name: theirs\nsource: {uri: theirs.csv}\n"
    other_key = spec_key(api.settings, "theirs", "other")
    store.put_bytes("raw/theirs.csv", ORDERS_CSV)
    store.put_bytes(other_key, theirs)
    with open_catalog(api.settings) as catalog:
        catalog.ensure_dataset("theirs", tenant="other")
    spec = GOOD_SPEC.replace("name: orders", "name: theirs").replace("uri: orders.csv", "uri: theirs.csv")

    refused(client.get("/api/v1/dataset-specs/theirs"), 404, 40401)
    saved = data(client.put("/api/v1/dataset-specs/theirs", json={"spec": spec}))
    assert saved["key"] == spec_key(api.settings, "theirs") == "raw/theirs.yaml" != other_key
    assert data(client.get("/api/v1/dataset-specs/theirs"))["spec"] == spec
    assert store.get_bytes(other_key) == theirs
