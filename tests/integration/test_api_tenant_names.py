"""Names per tenant as callers meet them: tenants ``default`` and ``acme`` each create a dataset ``sales``
and a knowledge base ``handbook`` through the API, with different rows and documents; each then lists,
previews, downloads, queries and searches its own alone, archiving or deleting in one leaves the other
as it was, and a run of one is not the other's (migration 0015).

One real server (uvicorn, loopback) over an empty local platform (SQLite catalog, local object store,
Milvus Lite, the packaged embedder); one super_admin service account per tenant. The migration test runs
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from alembic import command
from sqlalchemy import Engine, text

from ods.adapters.catalog import Catalog, head_revision, migrate
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.schema import utcnow
from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_envelope import data, finished_run, refused
from tests.support.api_server import RunningApi, running_api
from tests.support.postgres import catalog_engine

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
NOT_FOUND = 40401
DATASET, KB = "sales", "handbook"
ROWS = {
    "default": b"id,region,amount\n1,north,10\n2,south,20\n3,east,30\n",
    "acme": b"id,region,amount\n7,mars,700\n8,venus,800\n",
}
DOCUMENTS = {
    "default": (
        "holidays.md",
        b"# Holidays\n\nThe annual holiday allowance is 27 days, booked on the rota.\n",
    ),
    "acme": ("expenses.md", b"# Expenses\n\nThe daily meal allowance is 40 euros, claimed with receipts.\n"),
}
EVIDENCE = {"default": "27 days", "acme": "40 euros"}


@dataclass(frozen=True)
class Platform:
    api: RunningApi
    clients: dict[str, httpx.Client]
    dataset_runs: dict[str, str]
    kb_runs: dict[str, str]


def spec(name: str) -> dict[str, Any]:
    return {"name": name, "source": {"uri": "sales.csv"}, "expectations": [{"not_null": {"column": "id"}}]}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = load_settings(
        home=tmp_path_factory.mktemp("tenant-names") / "ods-home",
        answer={"style": "extractive"},
        api={"rate_limit_metadata": 0},
    )
    with open_catalog(settings) as catalog:
        keys = {
            tenant: create_api_key(catalog, f"{tenant}-admin", roles=["super_admin"], tenant=tenant).key
            for tenant in ROWS
        }
    store = build_object_store(settings)
    with running_api(settings) as api:
        clients = {
            tenant: httpx.Client(
                base_url=api.base_url, timeout=120, headers={"Authorization": f"Bearer {key}"}
            )
            for tenant, key in keys.items()
        }
        dataset_runs, kb_runs = {}, {}
        try:
            for tenant, client in clients.items():
                store.put_bytes(f"raw/{tenant}-sales.csv", ROWS[tenant])
                body = {"spec": spec(DATASET), "source_uri": store.uri(f"raw/{tenant}-sales.csv")}
                started = data(client.post("/api/v1/datasets", json=body), 202)
                run = finished_run(client, started["run"]["id"])
                assert run["state"] == "completed" and run["result"]["status"] == "registered", run
                dataset_runs[tenant] = run["id"]
                data(client.post("/api/v1/knowledge-bases", json={"name": KB}), 201)
                name, text_bytes = DOCUMENTS[tenant]
                files = {"file": (name, text_bytes, "text/markdown")}
                uploaded = data(client.post(f"/api/v1/knowledge-bases/{KB}/documents", files=files), 202)
                assert finished_run(client, uploaded["run"]["id"])["state"] == "completed"
                kb_runs[tenant] = uploaded["run"]["id"]
            yield Platform(api, clients, dataset_runs, kb_runs)
        finally:
            for client in clients.values():
                client.close()


def other(tenant: str) -> str:
    return "acme" if tenant == "default" else "default"


@pytest.mark.parametrize("tenant", list(ROWS))
def test_each_tenant_lists_previews_and_queries_its_own_sales(platform: Platform, tenant: str) -> None:
    client = platform.clients[tenant]
    assert [item["name"] for item in data(client.get("/api/v1/datasets"))["items"]] == [DATASET]
    rows = data(client.get(f"/api/v1/datasets/{DATASET}/versions/1/rows"))
    expected = ROWS[tenant].decode().splitlines()[1:]
    assert rows["total_rows"] == len(expected)
    assert [str(row[0]) for row in rows["rows"]] == [line.split(",")[0] for line in expected]
    result = data(
        client.post(
            "/api/v1/query/execute", json={"sql": "SELECT sum(CAST(amount AS INTEGER)) AS total FROM sales"}
        )
    )
    assert result["rows"] == [[sum(int(line.split(",")[2]) for line in expected)]]
    named = {"sql": "SELECT count(*) FROM sales", "datasets": [f"{DATASET}@1"]}
    assert data(client.post("/api/v1/query/execute", json=named))["rows"] == [[len(expected)]]


@pytest.mark.parametrize("tenant", list(ROWS))
def test_each_tenant_downloads_its_own_parquet(platform: Platform, tenant: str) -> None:
    client = platform.clients[tenant]
    granted = data(client.post(f"/api/v1/datasets/{DATASET}/credentials", json={"version": 1}))
    with httpx.Client(timeout=60) as anonymous:
        downloaded = anonymous.get(granted["url"])
    assert downloaded.status_code == 200
    table = pq.read_table(io.BytesIO(downloaded.content))
    expected = [line.split(",")[0] for line in ROWS[tenant].decode().splitlines()[1:]]
    assert table.column("id").to_pylist() == expected


@pytest.mark.parametrize("tenant", list(ROWS))
def test_each_tenant_searches_its_own_handbook(platform: Platform, tenant: str) -> None:
    client = platform.clients[tenant]
    assert [item["name"] for item in data(client.get("/api/v1/knowledge-bases"))] == [KB]
    [document] = data(client.get(f"/api/v1/knowledge-bases/{KB}/documents"))["items"]
    assert document["uri"].endswith(DOCUMENTS[tenant][0])
    hits = data(client.post(f"/api/v1/knowledge-bases/{KB}/search", json={"query": "allowance"}))["hits"]
    assert hits and all(EVIDENCE[tenant] in hit["text"] for hit in hits)
    assert not any(EVIDENCE[other(tenant)] in hit["text"] for hit in hits)


@pytest.mark.parametrize("tenant", list(ROWS))
def test_a_run_of_one_tenant_is_not_the_others(platform: Platform, tenant: str) -> None:
    client = platform.clients[tenant]
    own = {run["id"] for run in data(client.get("/api/v1/runs"))}
    theirs = {platform.dataset_runs[other(tenant)], platform.kb_runs[other(tenant)]}
    assert {platform.dataset_runs[tenant], platform.kb_runs[tenant]} <= own and not own & theirs
    for run_id in theirs:
        refused(client.get(f"/api/v1/runs/{run_id}"), 404, NOT_FOUND)


def test_archiving_and_deleting_in_one_tenant_leave_the_other(platform: Platform) -> None:
    acme, default = platform.clients["acme"], platform.clients["default"]
    archived = data(acme.delete(f"/api/v1/datasets/{DATASET}"))
    assert archived["archived_at"] is not None
    assert data(default.get(f"/api/v1/datasets/{DATASET}"))["archived_at"] is None
    data(acme.put(f"/api/v1/datasets/{DATASET}", json={"description": "acme's"}))
    assert data(default.get(f"/api/v1/datasets/{DATASET}"))["description"] is None
    data(acme.post(f"/api/v1/datasets/{DATASET}/restore"))

    [document] = data(acme.get(f"/api/v1/knowledge-bases/{KB}/documents"))["items"]
    deleted = data(acme.delete(f"/api/v1/knowledge-bases/{KB}/documents/{document['id']}"), 202)
    assert finished_run(acme, deleted["run"]["id"])["state"] == "completed"
    assert data(acme.post(f"/api/v1/knowledge-bases/{KB}/search", json={"query": "allowance"}))["hits"] == []
    hits = data(default.post(f"/api/v1/knowledge-bases/{KB}/search", json={"query": "allowance"}))["hits"]
    assert hits and EVIDENCE["default"] in hits[0]["text"]


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with catalog_engine(request.param, tmp_path, "ods_test_tenant_names_") as engine:
        yield engine


def test_migration_0015_keeps_rows_and_lets_two_tenants_share_a_name(empty_engine: Engine) -> None:
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0014")
        connection.execute(
            text(
                "INSERT INTO datasets (name, created_at, tags, tenant) VALUES ('sales', :now, '[]', 'default')"
            ),
            {"now": utcnow()},
        )
        connection.execute(
            text("INSERT INTO models (name, created_at, tenant) VALUES ('ranker', :now, 'acme')"),
            {"now": utcnow()},
        )
    assert migrate(empty_engine) == head_revision()

    catalog = Catalog(empty_engine)
    assert [(record.name, record.tenant) for record in catalog.list_datasets()] == [("sales", "default")]
    assert [(record.name, record.tenant) for record in catalog.list_models()] == [("ranker", "acme")]
    acme = catalog.for_tenant("acme")
    assert acme.ensure_dataset("sales").tenant == "acme"
    assert catalog.ensure_model("ranker").tenant == "default"
    assert catalog.get_dataset("sales").id != acme.get_dataset("sales").id
    assert sorted(record.tenant for record in catalog.list_datasets()) == ["acme", "default"]
