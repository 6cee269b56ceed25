"""The owner rule as callers meet it: a ``data_engineer`` edits and archives the datasets it created and
no other of its tenant (403), an ``ml_engineer`` undeploys and deletes its own models only, the admin
roles act on every resource of their tenant, and another tenant's resource stays a 404.

One real server (uvicorn, loopback) over an empty local platform; one service account per caller.
Datasets are registered through the API (the creator's subject becomes the owner); models are trained by
the CLI and flows, so they are recorded here through the catalog with the owner a training would give.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from ods.adapters.catalog import Catalog, migrate
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.schema import utcnow
from ods.api.authorization import OWNED_RESOURCES, ROUTE_PERMISSIONS
from ods.domain.permissions import PERMISSIONS
from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_envelope import data, finished_run, refused
from tests.support.api_server import running_api
from tests.support.postgres import catalog_engine

FORBIDDEN, NOT_FOUND, CONFLICT = 40301, 40401, 40901
ORDERS_CSV = b"id,status,amount\n1,paid,10.5\n2,pending,3\n"
CALLERS = {  # key name: (tenant, role)
    "de-one": ("acme", "data_engineer"),
    "de-two": ("acme", "data_engineer"),
    "data-boss": ("acme", "data_admin"),
    "de-globex": ("globex", "data_engineer"),
    "ml-one": ("acme", "ml_engineer"),
    "ml-two": ("acme", "ml_engineer"),
    "ml-boss": ("acme", "ml_admin"),
}


@dataclass(frozen=True)
class Owners:
    clients: dict[str, httpx.Client]
    catalog: Catalog


def register(client: httpx.Client, uri: str, name: str) -> None:
    spec = {"name": name, "source": {"uri": "orders.csv"}, "expectations": [{"not_null": {"column": "id"}}]}
    started = data(client.post("/api/v1/datasets", json={"spec": spec, "source_uri": uri}), 202)
    run = finished_run(client, started["run"]["id"])
    assert run["state"] == "completed" and run["result"]["status"] == "registered", run


@pytest.fixture(scope="module")
def owners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owners]:
    home = tmp_path_factory.mktemp("owners") / "ods-home"
    settings = load_settings(home=home, api={"rate_limit_metadata": 0})  # polling runs makes many requests
    acme = load_settings(home=home, tenant="acme")  # what the CLI of tenant acme creates in
    with open_catalog(
        acme, stamp_owner=False
    ) as catalog:  # rows with no owner named keep none, as before 0014
        keys = {
            name: create_api_key(catalog, name, roles=[role], tenant=tenant).key
            for name, (tenant, role) in CALLERS.items()
        }
        catalog.ensure_model("ranker", owner="ml-one")
        catalog.ensure_model("scorer", owner="ml-one")
        catalog.ensure_model("legacy")  # made before owners were recorded: no owner
        served = catalog.ensure_model("served", owner="ml-one")
        version = catalog.add_model_version(
            served.name, trainer="sklearn", params={}, metrics={}, artifact_uri="file:///nowhere/served"
        )
        catalog.add_endpoint(version.id, backend="transformers", url="http://127.0.0.1:9/v1", status="active")
        store = build_object_store(settings)
        store.put_bytes("raw/orders.csv", ORDERS_CSV)
        uri = store.uri("raw/orders.csv")
        catalog.ensure_dataset("legacy_sales")  # no owner
        with running_api(settings) as api:
            clients = {
                name: httpx.Client(
                    base_url=api.base_url, timeout=120, headers={"Authorization": f"Bearer {key}"}
                )
                for name, key in keys.items()
            }
            try:
                register(clients["de-one"], uri, "orders")
                register(clients["de-two"], uri, "regions")
                yield Owners(clients, catalog)
            finally:
                for client in clients.values():
                    client.close()


def test_the_creator_is_recorded_as_owner(owners: Owners) -> None:
    assert owners.catalog.get_dataset("orders").owner == "de-one"
    assert owners.catalog.get_dataset("regions").owner == "de-two"
    assert owners.catalog.get_dataset("legacy_sales").owner is None


def test_a_data_engineer_edits_and_archives_its_own_dataset(owners: Owners) -> None:
    one = owners.clients["de-one"]
    assert data(one.get("/api/v1/datasets/orders"))["owner"] == "de-one"
    listed = {item["name"]: item["owner"] for item in data(one.get("/api/v1/datasets"))["items"]}
    assert listed == {"legacy_sales": None, "orders": "de-one", "regions": "de-two"}
    edited = data(one.put("/api/v1/datasets/orders", json={"description": "paid orders"}))
    assert edited["description"] == "paid orders"
    assert data(one.delete("/api/v1/datasets/orders"))["archived_at"] is not None
    assert data(one.post("/api/v1/datasets/orders/restore"))["archived_at"] is None


def test_a_data_engineer_cannot_change_another_callers_dataset(owners: Owners) -> None:
    one = owners.clients["de-one"]
    for answer in (
        one.put("/api/v1/datasets/regions", json={"description": "mine now"}),
        one.delete("/api/v1/datasets/regions"),
        one.post("/api/v1/datasets/regions/restore"),
    ):
        body = refused(answer, 403, FORBIDDEN)
        assert "another caller created it: dataset 'regions'" in body["message"], body
        assert "de-two" not in body["message"]
    legacy = refused(one.put("/api/v1/datasets/legacy_sales", json={"tags": ["x"]}), 403, FORBIDDEN)
    assert "made before owners were recorded" in legacy["message"]
    assert "data_admin" in legacy["message"]  # who may act instead
    detail = data(one.get("/api/v1/datasets/regions"))
    assert detail["description"] is None and detail["archived_at"] is None


def test_a_data_admin_changes_any_dataset_of_its_tenant(owners: Owners) -> None:
    boss = owners.clients["data-boss"]
    assert data(boss.put("/api/v1/datasets/regions", json={"tags": ["geo"]}))["tags"] == ["geo"]
    assert data(boss.put("/api/v1/datasets/legacy_sales", json={"tags": ["old"]}))["tags"] == ["old"]


def test_another_tenants_dataset_stays_a_404(owners: Owners) -> None:
    stranger = owners.clients["de-globex"]
    refused(stranger.put("/api/v1/datasets/orders", json={"description": "x"}), 404, NOT_FOUND)
    refused(stranger.delete("/api/v1/datasets/orders"), 404, NOT_FOUND)
    refused(stranger.put("/api/v1/datasets/nothing_here", json={"description": "x"}), 404, NOT_FOUND)


def test_an_ml_engineer_deletes_its_own_model_only(owners: Owners) -> None:
    one, two = owners.clients["ml-one"], owners.clients["ml-two"]
    body = refused(two.delete("/api/v1/models/scorer"), 403, FORBIDDEN)
    assert "models.delete" in body["message"] and "ml-one" not in body["message"]
    refused(two.post("/api/v1/models/undeploy", json={"model": "scorer"}), 403, FORBIDDEN)
    refused(two.post("/api/v1/models/undeploy", json={"model": "scorer@1"}), 403, FORBIDDEN)
    refused(one.delete("/api/v1/models/legacy"), 403, FORBIDDEN)

    assert data(one.get("/api/v1/models/ranker"))["owner"] == "ml-one"
    deleted = data(one.delete("/api/v1/models/ranker"))
    assert deleted == {"name": "ranker", "description": None, "versions_deleted": 0}
    refused(one.delete("/api/v1/models/ranker"), 404, NOT_FOUND)  # gone: a second delete finds nothing
    assert "ranker" not in {model["name"] for model in data(one.get("/api/v1/models"))}
    assert data(owners.clients["ml-boss"].delete("/api/v1/models/legacy"))["name"] == "legacy"


def test_a_served_model_is_not_deleted(owners: Owners) -> None:
    body = refused(owners.clients["ml-one"].delete("/api/v1/models/served"), 409, CONFLICT)
    assert "http://127.0.0.1:9/v1" in body["message"] and "undeploy" in body["message"]
    assert [version.version for version in owners.catalog.list_model_versions("served")] == [1]


def test_every_route_of_an_owner_cell_says_where_its_resource_is() -> None:
    """A route whose permission has "owner" cells but no OWNED_RESOURCES entry would refuse every
    owner-only caller (fail closed); this keeps the two tables in step."""
    owner_routes = {
        key
        for key, permission in ROUTE_PERMISSIONS.items()
        if permission in PERMISSIONS and PERMISSIONS[permission].as_owner
    }
    assert owner_routes == set(OWNED_RESOURCES)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with catalog_engine(request.param, tmp_path, "ods_test_owners_") as engine:
        yield engine


def test_migration_0014_leaves_existing_rows_without_owner(empty_engine: Engine) -> None:
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0013")
        connection.execute(
            text("INSERT INTO datasets (name, created_at, tags) VALUES ('old_sales', :now, '[]')"),
            {"now": utcnow()},
        )
    migrate(empty_engine)
    catalog = Catalog(empty_engine)
    assert [(record.name, record.owner) for record in catalog.list_datasets()] == [("old_sales", None)]
    assert catalog.ensure_model("fresh", owner="ml-one").owner == "ml-one"
    assert catalog.ensure_model("fresh", owner="someone-else").owner == "ml-one"  # kept

    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0013")
    for table in ("datasets", "models", "knowledge_bases"):
        assert "owner" not in {column["name"] for column in inspect(empty_engine).get_columns(table)}, table
    migrate(empty_engine)
