"""The write side of datasets in `ods serve`: register, describe and tag, archive and restore, and
short-lived read access to a version's Parquet, as a client meets them.

One real server (uvicorn on a free loopback port) over an empty local platform (SQLite catalog, local
object store; no model is loaded), and one on an S3 store for the presigned URL. The catalog side
(migration 0007, tags and archiving) runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import Engine, inspect

from ods.adapters.catalog import Catalog, create_catalog_engine, current_revision, migrate
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.datasets import InvalidTagError
from ods.adapters.object_store import key_of
from ods.adapters.object_store.minio_store import MinioObjectStore
from ods.api.downloads import DownloadSigner
from ods.errors import NotFoundError
from ods.factories import build_object_store
from ods.settings import load_settings
from tests.support.api_envelope import data, refused
from tests.support.api_server import RunningApi, running_api
from tests.support.postgres import temporary_database
from tests.support.s3_server import S3Server

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SIGNING_KEY = "test-signing-key-" + "k" * 32
ORDERS_CSV = b"""id,status,amount
1,paid,10.5
2,pending,3
3,paid,7.25
4,refunded,12
"""
ORDERS_SPEC: dict[str, Any] = {
    "name": "orders",
    "description": "Shop orders",
    "source": {"uri": "orders.csv"},
    "steps": [{"coerce": {"column": "amount", "type": "float"}}],
    "expectations": [{"not_null": {"column": "id"}}],
}
STRICT_SPEC_YAML = """name: orders_strict
source: {uri: orders.csv}
steps:
  - coerce: {column: amount, type: float}
expectations:
  - in_set: {column: status, values: [paid, pending]}
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    settings = load_settings(
        home=tmp_path_factory.mktemp("api-datasets-write") / "ods-home",
        api={"rate_limit_metadata": 0, "signing_key": SIGNING_KEY},  # polling runs makes many requests
    )
    with running_api(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


@pytest.fixture(scope="module")
def orders_uri(api: RunningApi) -> str:
    store = build_object_store(api.settings)
    store.put_bytes("raw/orders.csv", ORDERS_CSV)
    return store.uri("raw/orders.csv")


@pytest.fixture(scope="module")
def orders(client: httpx.Client, orders_uri: str) -> dict[str, Any]:
    """The orders dataset registered once through the API: the finished run."""
    started = data(client.post("/api/v1/datasets", json={"spec": ORDERS_SPEC, "source_uri": orders_uri}), 202)
    return finished_run(client, started["run"]["id"])


def finished_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The run once it completed or failed (pytest-timeout stops a run that never ends)."""
    while True:
        run: dict[str, Any] = data(client.get(f"/api/v1/runs/{run_id}"))
        if run["state"] in ("completed", "failed"):
            return run
        time.sleep(0.1)


# -- registering --------------------------------------------------------------------------------------


def test_a_spec_registers_a_version_in_the_background(
    client: httpx.Client, orders_uri: str, orders: dict[str, Any]
) -> None:
    assert (orders["kind"], orders["target"], orders["state"]) == ("prepare", "orders", "completed"), orders
    result = orders["result"]
    assert (result["dataset"], result["version"], result["status"], result["rows"]) == (
        "orders",
        1,
        "registered",
        4,
    )
    detail = data(client.get("/api/v1/datasets/orders"))
    assert detail["description"] == "Shop orders" and detail["tags"] == [] and detail["archived_at"] is None
    [version] = detail["versions"]
    assert version["lineage"]["source_uri"] == orders_uri and version["uri"] == result["uri"]
    assert version["card_uri"] == result["card_uri"] is not None

    # The spec as a YAML body (source as a query parameter), same table and spec: the same version.
    yaml_spec = "name: orders\ndescription: Shop orders\nsource: {uri: orders.csv}\n" + (
        "steps:\n  - coerce: {column: amount, type: float}\nexpectations:\n  - not_null: {column: id}\n"
    )
    again = data(
        client.post(
            "/api/v1/datasets",
            params={"source_uri": orders_uri},
            content=yaml_spec,
            headers={"Content-Type": "application/yaml"},
        ),
        202,
    )
    rerun = finished_run(client, again["run"]["id"])
    assert (rerun["state"], rerun["result"]["version"]) == ("completed", 1), rerun
    assert len(data(client.get("/api/v1/datasets/orders"))["versions"]) == 1


def test_a_rejected_version_names_the_failed_expectations_and_the_quarantine(
    client: httpx.Client, orders_uri: str
) -> None:
    started = data(
        client.post("/api/v1/datasets", json={"spec": STRICT_SPEC_YAML, "source_uri": orders_uri}), 202
    )
    run = finished_run(client, started["run"]["id"])

    assert run["state"] == "completed", run
    result = run["result"]
    assert result["status"] == "rejected" and "in_set(status)" in result["reason"], result
    assert result["quarantine_uri"] and result["quarantined_rows"] == 1
    assert data(client.get("/api/v1/datasets/orders_strict"))["versions"][0]["status"] == "rejected"
    conflict = refused(
        client.post("/api/v1/datasets/orders_strict/credentials", json={"version": 1}), 409, 40901
    )
    assert "rejected" in conflict["message"]


def test_a_bad_spec_or_source_is_refused_before_any_run(client: httpx.Client, orders_uri: str) -> None:
    bad_step = {**ORDERS_SPEC, "steps": [{"coerce": {"column": "amount", "type": "money"}}]}
    spec = refused(
        client.post("/api/v1/datasets", json={"spec": bad_step, "source_uri": orders_uri}), 400, 40001
    )
    assert spec["details"]["field"] == "body.spec" and "steps[0].coerce.type" in spec["message"], spec
    missing = refused(client.post("/api/v1/datasets", json={"source_uri": orders_uri}), 400, 40001)
    assert missing["details"]["field"] == "body.spec"
    outside = refused(
        client.post("/api/v1/datasets", json={"spec": ORDERS_SPEC, "source_uri": "/etc/hostname"}), 400, 40001
    )
    assert "not in the object store" in outside["message"]
    relative = refused(client.post("/api/v1/datasets", json={"spec": ORDERS_SPEC}), 400, 40001)
    assert "'orders.csv' is not in the object store" in relative["message"]
    absent = orders_uri.replace("orders.csv", "absent.csv")
    refused(client.post("/api/v1/datasets", json={"spec": ORDERS_SPEC, "source_uri": absent}), 404, 40401)


# -- describing, tagging, archiving ---------------------------------------------------------------------


def test_describe_tag_filter_archive_and_restore(
    client: httpx.Client, orders_uri: str, orders: dict[str, Any]
) -> None:
    tagged = data(client.put("/api/v1/datasets/orders", json={"tags": ["shop", "daily"]}))
    assert tagged["tags"] == ["daily", "shop"] and tagged["description"] == "Shop orders"
    described = data(client.put("/api/v1/datasets/orders", json={"description": "Orders, by day"}))
    assert described["tags"] == ["daily", "shop"] and described["description"] == "Orders, by day"
    bad = refused(client.put("/api/v1/datasets/orders", json={"tags": ["Not A Tag"]}), 400, 40001)
    assert bad["details"]["field"].startswith("body.tags") and "'Not A Tag' is not allowed" in bad["message"]
    refused(client.put("/api/v1/datasets/nope", json={"tags": ["x"]}), 404, 40401)

    def listed(**params: Any) -> list[str]:
        return [item["name"] for item in data(client.get("/api/v1/datasets", params=params))["items"]]

    assert "orders" in listed() and listed(tags="shop,daily") == ["orders"] and listed(tags="shop,hr") == []
    archived = data(client.delete("/api/v1/datasets/orders"))
    assert archived["archived_at"] is not None and archived["version_count"] == 1
    assert "orders" not in listed() and "orders" in listed(include_archived="true")
    assert data(client.get("/api/v1/datasets/orders"))["archived_at"] == archived["archived_at"]
    blocked = refused(
        client.post("/api/v1/datasets", json={"spec": ORDERS_SPEC, "source_uri": orders_uri}), 409, 40901
    )
    assert "restore" in blocked["message"]
    # Archiving keeps the bytes: the version is still readable.
    assert data(client.get("/api/v1/datasets/orders/versions/1/rows"))["total_rows"] == 4

    restored = data(client.post("/api/v1/datasets/orders/restore"))
    assert restored["archived_at"] is None and "orders" in listed()
    cleared = data(client.put("/api/v1/datasets/orders", json={"description": None, "tags": []}))
    assert (cleared["description"], cleared["tags"]) == (None, [])


# -- short-lived read access ----------------------------------------------------------------------------


def test_a_signed_download_url_serves_the_stored_parquet(
    api: RunningApi, client: httpx.Client, orders: dict[str, Any]
) -> None:
    granted = data(client.post("/api/v1/datasets/orders/credentials", json={"version": 1, "expires_in": 60}))
    assert granted["kind"] == "signed-download" and granted["url"].startswith(
        f"{api.base_url}/api/v1/downloads/"
    )
    store = build_object_store(api.settings)
    stored = store.get_bytes(key_of(store, orders["result"]["uri"]))

    with httpx.Client(timeout=60) as anonymous:  # a tool without the API's client or key
        downloaded = anonymous.get(granted["url"])
    assert downloaded.status_code == 200 and downloaded.content == stored
    assert downloaded.headers["content-type"] == "application/vnd.apache.parquet"

    token = granted["url"].rsplit("/", 1)[-1]
    payload, mac = token.split(".")
    forged = f"{payload}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"  # a MAC bit flipped
    # The last character of a base64 MAC carries 2 unused bits: changed, the bytes may stay the same.
    altered_tail = f"{payload}.{mac[:-1]}{'B' if mac[-1] == 'A' else 'A'}"
    assert (
        "not signed by this server"
        in refused(client.get(f"/api/v1/downloads/{forged}"), 403, 40301)["message"]
    )
    refused(client.get(f"/api/v1/downloads/{altered_tail}"), 403, 40301)
    expired = DownloadSigner(SIGNING_KEY.encode()).sign(
        key_of(store, orders["result"]["uri"]), int(time.time()) - 1
    )
    assert "expired" in refused(client.get(f"/api/v1/downloads/{expired}"), 401, 40101)["message"]
    too_long = refused(
        client.post("/api/v1/datasets/orders/credentials", json={"version": 1, "expires_in": 7200}),
        400,
        40001,
    )
    assert too_long["details"]["field"] == "body.expires_in"
    refused(client.post("/api/v1/datasets/orders/credentials", json={"version": 9}), 404, 40401)


def test_a_presigned_url_on_an_s3_store(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, s3_store: MinioObjectStore
) -> None:
    settings = load_settings(
        home=tmp_path_factory.mktemp("api-datasets-s3") / "ods-home",
        object_store={
            "kind": "minio",
            "endpoint": s3_server.endpoint,
            "bucket": s3_store.bucket,
            "access_key": s3_server.access_key,
            "secret_key": s3_server.secret_key,
        },
    )
    s3_store.put_bytes("raw/orders.csv", ORDERS_CSV)
    source = f"s3://{s3_store.bucket}/raw/orders.csv"
    with running_api(settings) as served, httpx.Client(base_url=served.base_url, timeout=120) as client:
        started = data(client.post("/api/v1/datasets", json={"spec": ORDERS_SPEC, "source_uri": source}), 202)
        run = finished_run(client, started["run"]["id"])
        granted = data(
            client.post("/api/v1/datasets/orders/credentials", json={"version": 1, "expires_in": 300})
        )
    downloaded = httpx.get(granted["url"], timeout=60)

    assert run["state"] == "completed" and run["result"]["status"] == "registered", run
    assert granted["kind"] == "presigned-s3" and "X-Amz-Signature=" in granted["url"]
    assert downloaded.status_code == 200
    assert downloaded.content == s3_store.get_bytes(key_of(s3_store, run["result"]["uri"]))


# -- the catalog side, on both backends ---------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_catalog_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
        yield engine
        engine.dispose()
        return
    with temporary_database("ods_test_datasets_") as url:
        engine = create_catalog_engine(url)
        yield engine
        engine.dispose()


def _dataset_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("datasets")}


def test_migration_0007_adds_tags_and_archived_at_and_takes_them_back(empty_engine: Engine) -> None:
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0006")
        connection.exec_driver_sql(
            "INSERT INTO datasets (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)"
        )
    assert {"tags", "archived_at"}.isdisjoint(_dataset_columns(empty_engine))

    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0007")
    assert {"description", "tags", "archived_at"} <= _dataset_columns(empty_engine)
    old = Catalog(empty_engine).get_dataset("old")
    assert (old.tags, old.archived_at, old.description) == ((), None, None)

    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0006")
    assert {"tags", "archived_at"}.isdisjoint(_dataset_columns(empty_engine))
    assert current_revision(empty_engine) == "0006"
    migrate(empty_engine)
    assert "tags" in _dataset_columns(empty_engine)


def test_the_catalog_tags_archives_and_restores_datasets(empty_engine: Engine) -> None:
    catalog = Catalog(empty_engine)
    catalog.ensure_dataset("sales", "orders")
    catalog.ensure_dataset("customers")

    tagged = catalog.update_dataset("sales", tags=["finance", "daily", "finance"])
    assert tagged.tags == ("daily", "finance") and tagged.description == "orders"
    assert catalog.update_dataset("sales", description="orders by day").tags == ("daily", "finance")
    assert [d.name for d in catalog.list_datasets(tags=["finance"])] == ["sales"]
    assert catalog.list_datasets(tags=["finance", "hr"]) == []
    with pytest.raises(InvalidTagError, match="tag 'Bad Tag' is not allowed"):
        catalog.update_dataset("sales", tags=["Bad Tag"])
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        catalog.update_dataset("nope", tags=["x"])

    archived = catalog.archive_dataset("sales")
    assert archived.archived_at is not None
    assert catalog.archive_dataset("sales").archived_at == archived.archived_at
    assert [d.name for d in catalog.list_datasets(include_archived=False)] == ["customers"]
    assert [d.name for d in catalog.list_datasets()] == ["customers", "sales"]
    assert catalog.restore_dataset("sales").archived_at is None
    assert [d.name for d in catalog.list_datasets(include_archived=False)] == ["customers", "sales"]


def test_the_openapi_document_describes_the_write_routes(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]

    register = paths["/api/v1/datasets"]["post"]["requestBody"]["content"]
    assert set(register) == {"application/json", "application/yaml"}
    assert "spec" in register["application/json"]["schema"]["properties"]
    assert {"put", "delete"} <= set(paths["/api/v1/datasets/{name}"])
    assert "tags" in schemas["UpdateDataset"]["properties"] and "url" in schemas["Credentials"]["properties"]
    download = paths["/api/v1/downloads/{token}"]["get"]
    assert download["security"] == [] and {"401", "403"} <= set(download["responses"])
