"""Metadata routes of `ods serve`: databases, tables, columns with profile and PII flags, semantic search.

One real server for the module over the sample platform (the sales example registered as a dataset), a
second dataset registered beside it, and a read-only SQLite warehouse with one allowlisted table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from ods.domain.profiling import profile_frame
from ods.factories import open_catalog
from ods.settings import Settings
from ods.stages.prepare import frame_schema
from tests.support.api_server import DATASET, RunningApi, served_platform

TICKETS = "support_tickets"


def register_frame(settings: Settings, name: str, frame: pd.DataFrame, description: str) -> None:
    """``frame`` as a registered version of dataset ``name`` (schema and profile as prepare stores them;
    the metadata routes read no Parquet)."""
    with open_catalog(settings) as catalog:
        catalog.add_dataset_version(
            name,
            content_hash=f"{name}-{len(frame.columns)}",
            uri=f"file:///nowhere/{name}/v{len(frame.columns)}.parquet",
            schema=frame_schema(frame),
            profile=dict(profile_frame(frame)),
            row_count=len(frame),
            size_bytes=0,
            status="registered",
            description=description,
        )


def tickets(extra: dict[str, list[Any]] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": [1, 2, 3],
            "opened_at": pd.to_datetime(["2026-01-02", "2026-01-03", "2026-01-05"]),
            "priority": ["high", "low", "low"],
            "resolution_hours": [4.5, 30.0, 12.0],
            **(extra or {}),
        }
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    root = tmp_path_factory.mktemp("api-metadata")
    warehouse = root / "warehouse.sqlite"
    with sqlite3.connect(warehouse) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER, contact_email TEXT, city TEXT)")
        connection.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(1, "ann@example.com", "Leeds"), (2, "bob@example.org", "York")],
        )
    with served_platform(
        root, warehouse={"url": f"sqlite:///{warehouse}", "tables": ["customers"]}
    ) as running:
        register_frame(
            running.settings, TICKETS, tickets(), "Customer support tickets and how long they took"
        )
        yield running


@pytest.fixture
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.json()["code"] == 0
    return response.json()["data"]


def test_databases_and_their_tables(client: httpx.Client) -> None:
    databases = data(client.get("/api/v1/metadata/databases"))
    datasets = data(client.get("/api/v1/metadata/databases/datasets/tables"))
    warehouse = data(client.get("/api/v1/metadata/databases/warehouse/tables"))
    unknown = client.get("/api/v1/metadata/databases/nope/tables")

    assert [(item["name"], item["table_count"]) for item in databases] == [("datasets", 2), ("warehouse", 1)]
    assert [item["name"] for item in datasets] == [DATASET, TICKETS]
    assert datasets[0]["version"] == 1 and 280 < datasets[0]["row_count"] <= 300
    assert datasets[1]["description"] == "Customer support tickets and how long they took"
    assert warehouse == [
        {
            "database": "warehouse",
            "name": "customers",
            "description": None,
            "version": None,
            "row_count": None,
            "column_count": 3,
        }
    ]
    assert unknown.status_code == 404 and "databases: datasets, warehouse" in unknown.json()["message"]


def test_a_table_has_columns_with_types_profile_and_pii(client: httpx.Client) -> None:
    sales = data(client.get(f"/api/v1/metadata/databases/datasets/tables/{DATASET}"))
    customers = data(client.get("/api/v1/metadata/databases/warehouse/tables/customers"))
    missing = client.get("/api/v1/metadata/databases/datasets/tables/nope")
    bad_name = client.get("/api/v1/metadata/databases/datasets/tables/Sales%00")

    columns = {column["name"]: column for column in sales["columns"]}
    assert sales["source"] == f"{DATASET}@1" and sales["column_count"] == len(columns)
    assert columns["customer_email"]["pii_kind"] == "email" and columns["region"]["pii_kind"] is None
    assert columns["revenue"]["type"] == "DOUBLE" and columns["revenue"]["profile"]["min"] is not None
    assert columns["region"]["profile"]["top_values"] and "distinct" in columns["region"]["description"]
    warehouse_columns = {column["name"]: column for column in customers["columns"]}
    assert warehouse_columns["contact_email"]["pii_kind"] == "email"
    assert warehouse_columns["city"]["pii_kind"] is None and warehouse_columns["city"]["profile"] is None
    assert missing.status_code == 404 and missing.json()["code"] == 40401
    assert bad_name.status_code == 400 and bad_name.json()["code"] == 40001


def search(client: httpx.Client, query: str, **extra: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data(
        client.post("/api/v1/metadata/tables/search", json={"query": query, **extra})
    )
    return found


def test_search_finds_tables_by_meaning(client: httpx.Client) -> None:
    revenue = search(client, "revenue by region")
    slow_tickets = search(client, "how long support requests take to resolve", top_k=1)
    emails = search(client, "customer email addresses", databases=["warehouse"])
    empty_query = client.post("/api/v1/metadata/tables/search", json={"query": ""})

    assert revenue[0]["table"] == DATASET and revenue[0]["database"] == "datasets"
    assert {"revenue", "region"} <= {column["name"] for column in revenue[0]["matched_columns"]}
    scores = [item["score"] for item in revenue]
    assert scores == sorted(scores, reverse=True) and len(revenue) == 3  # both datasets and customers
    assert [(item["table"], item["database"]) for item in slow_tickets] == [(TICKETS, "datasets")]
    assert emails[0]["table"] == "customers" and emails[0]["matched_columns"][0]["name"] == "contact_email"
    assert empty_query.status_code == 400 and empty_query.json()["details"]["field"] == "body.query"


def test_a_new_version_is_searched_with_its_new_columns(api: RunningApi, client: httpx.Client) -> None:
    before = search(client, "refund amount paid back", top_k=5)
    register_frame(
        api.settings, TICKETS, tickets({"refund_amount": [0.0, 12.5, 3.0]}), "Support tickets with refunds"
    )
    after = search(client, "refund amount paid back", top_k=5)
    table = data(client.get(f"/api/v1/metadata/databases/datasets/tables/{TICKETS}"))

    def tickets_match(found: list[dict[str, Any]]) -> dict[str, Any]:
        return next(item for item in found if item["table"] == TICKETS)

    assert "refund_amount" not in [column["name"] for column in tickets_match(before)["matched_columns"]]
    assert tickets_match(after)["matched_columns"][0]["name"] == "refund_amount"
    assert tickets_match(after)["score"] > tickets_match(before)["score"]
    assert table["version"] == 2 and table["column_count"] == 5


def test_an_archived_dataset_is_no_longer_listed_or_found(api: RunningApi, client: httpx.Client) -> None:
    register_frame(api.settings, "old_orders", tickets(), "Orders of a retired shop")
    listed = [item["name"] for item in data(client.get("/api/v1/metadata/databases/datasets/tables"))]
    with open_catalog(api.settings) as catalog:
        catalog.archive_dataset("old_orders")
    after = [item["name"] for item in data(client.get("/api/v1/metadata/databases/datasets/tables"))]
    found = [item["table"] for item in search(client, "orders of a retired shop", top_k=50)]

    assert "old_orders" in listed and "old_orders" not in after and "old_orders" not in found
