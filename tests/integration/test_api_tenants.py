"""Tenant isolation as callers meet it: tenant ``acme`` creates a dataset, a knowledge base with a
document, a conversation and a webhook through the API; tenant ``globex`` then lists, shows, previews,
downloads, searches, asks, runs SQL, reads metadata, conversations, webhooks and runs, and gets none of
it: empty lists, 404 (never 403) on direct reads, an unknown table in SQL, and no name of acme's in any
answer.

One real server (uvicorn, loopback) over an empty local platform (SQLite catalog, local object store,
Milvus Lite, the packaged embedder); one super_admin service account per tenant, so the isolation holds
for the strongest role too. Answers quote their evidence (no model generation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from ods.adapters.catalog import Catalog, head_revision, migrate
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.schema import utcnow
from ods.adapters.milvus.schema import collection_name
from ods.errors import SettingsError
from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_envelope import data, finished_run, refused
from tests.support.api_server import RunningApi, running_api
from tests.support.postgres import catalog_engine

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
TENANT_TABLES = ("datasets", "models", "knowledge_bases", "conversations", "webhooks")

NOT_FOUND = 40401
CONFLICT = 40901
ORDERS_CSV = b"id,status,amount\n1,paid,10.5\n2,pending,3\n3,paid,7.25\n4,refunded,12\n"
HOLIDAYS = b"# Holidays\n\nEvery employee has an annual holiday allowance of 27 days, booked on the rota.\n"
A_KB, A_DATASET, B_DATASET = "handbook", "orders", "regions"
A_ROWS, B_ROWS = "SELECT * FROM orders", "SELECT * FROM regions"


def spec(name: str) -> dict[str, Any]:
    return {"name": name, "source": {"uri": "orders.csv"}, "expectations": [{"not_null": {"column": "id"}}]}


@dataclass(frozen=True)
class Tenants:
    api: RunningApi
    a: httpx.Client
    b: httpx.Client
    kb_run: str
    dataset_run: str
    conversation: str
    webhook: int
    document: int


def register(client: httpx.Client, uri: str, name: str) -> str:
    started = data(client.post("/api/v1/datasets", json={"spec": spec(name), "source_uri": uri}), 202)
    run = finished_run(client, started["run"]["id"])
    assert run["state"] == "completed" and run["result"]["status"] == "registered", run
    return str(run["id"])


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    settings = load_settings(
        home=tmp_path_factory.mktemp("tenants") / "ods-home",
        answer={"style": "extractive"},
        api={"rate_limit_metadata": 0},  # polling runs makes many requests
    )
    with open_catalog(settings) as catalog:
        keys = {
            tenant: create_api_key(catalog, f"{tenant}-admin", roles=["super_admin"], tenant=tenant).key
            for tenant in ("acme", "globex")
        }
    store = build_object_store(settings)
    store.put_bytes("raw/orders.csv", ORDERS_CSV)
    uri = store.uri("raw/orders.csv")
    with (
        running_api(settings) as api,
        httpx.Client(base_url=api.base_url, timeout=120, headers=_bearer(keys["acme"])) as a,
        httpx.Client(base_url=api.base_url, timeout=120, headers=_bearer(keys["globex"])) as b,
    ):
        data(a.post("/api/v1/knowledge-bases", json={"name": A_KB}), 201)
        files = {"file": ("holidays.md", HOLIDAYS, "text/markdown")}
        uploaded = data(a.post(f"/api/v1/knowledge-bases/{A_KB}/documents", files=files), 202)
        assert finished_run(a, uploaded["run"]["id"])["state"] == "completed"
        [document] = data(a.get(f"/api/v1/knowledge-bases/{A_KB}/documents"))["items"]
        dataset_run = register(a, uri, A_DATASET)
        register(b, uri, B_DATASET)
        asked = data(a.post("/api/v1/ask", json={"question": "How many holiday days?", "kb": A_KB}))
        hook = {"url": "http://127.0.0.1:9/hook", "events": ["query.completed"]}
        webhook = data(a.post("/api/v1/webhooks", json=hook), 201)
        yield Tenants(
            api,
            a,
            b,
            uploaded["run"]["id"],
            dataset_run,
            asked["conversation_id"],
            webhook["id"],
            document["id"],
        )


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def hidden(response: httpx.Response) -> dict[str, Any]:
    """A 404 that names no tenant and none of acme's resources but the one asked for."""
    body = refused(response, 404, NOT_FOUND)
    assert "acme" not in response.text and "27 days" not in response.text, response.text
    return body


def test_tenant_a_sees_what_it_made(tenants: Tenants) -> None:
    a = tenants.a
    assert [item["name"] for item in data(a.get("/api/v1/datasets"))["items"]] == [A_DATASET]
    assert [item["name"] for item in data(a.get("/api/v1/knowledge-bases"))] == [A_KB]
    hits = data(a.post(f"/api/v1/knowledge-bases/{A_KB}/search", json={"query": "holiday allowance"}))["hits"]
    assert hits and "27 days" in hits[0]["text"]
    rows = data(a.get(f"/api/v1/datasets/{A_DATASET}/versions/1/rows"))
    assert rows["total_rows"] == len(rows["rows"]) == 4
    assert [item["id"] for item in data(a.get("/api/v1/conversations"))] == [tenants.conversation]
    assert [item["id"] for item in data(a.get("/api/v1/webhooks"))] == [tenants.webhook]
    assert tenants.dataset_run in {run["id"] for run in data(a.get("/api/v1/runs"))}


def test_a_tenants_documents_and_vectors_live_under_its_own_names(tenants: Tenants) -> None:
    """acme's uploads sit under tenants/acme/ (outside the default tenant's docs/), its vectors in a
    collection named for acme; the default tenant's names are those made before tenants existed."""
    record = tenants.api.resources.catalog.for_tenant("acme").get_knowledge_base(A_KB)
    assert record.collection_name.startswith(f"kb_t_acme__{A_KB}__")
    assert record.collection_name != collection_name(A_KB, record.embedding_model)
    assert collection_name(A_KB, record.embedding_model, "default") == collection_name(
        A_KB, record.embedding_model
    )
    store = build_object_store(tenants.api.settings)
    assert [info.key for info in store.list("tenants/acme/docs/")] == [
        f"tenants/acme/docs/{A_KB}/holidays.md"
    ]
    assert list(store.list("datasets/")) == []  # each tenant's datasets sit under its own prefix too
    assert list(store.list("docs/")) == []
    assert record.source_uri is not None and record.source_uri.rstrip("/").endswith(
        f"tenants/acme/docs/{A_KB}"
    )


def test_tenant_b_lists_none_of_a(tenants: Tenants) -> None:
    b = tenants.b
    assert [
        item["name"] for item in data(b.get("/api/v1/datasets", params={"include_archived": True}))["items"]
    ] == [B_DATASET]
    assert data(b.get("/api/v1/knowledge-bases")) == []
    assert data(b.get("/api/v1/conversations")) == []
    assert data(b.get("/api/v1/webhooks")) == []
    assert data(b.get("/api/v1/models")) == []
    run_ids = {run["id"] for run in data(b.get("/api/v1/runs"))}
    assert tenants.kb_run not in run_ids and tenants.dataset_run not in run_ids and run_ids
    models = {model["id"] for model in b.get("/v1/models").json()["data"]}
    assert f"sql:{B_DATASET}" in models
    assert not {f"kb:{A_KB}", f"sql:{A_DATASET}"} & models


def test_tenant_b_reads_of_a_dataset_are_404(tenants: Tenants) -> None:
    b, name = tenants.b, A_DATASET
    body = hidden(b.get(f"/api/v1/datasets/{name}"))
    assert B_DATASET in body["message"]  # the 404 names the caller's own datasets only
    hidden(b.get(f"/api/v1/datasets/{name}/versions/1/rows"))
    hidden(b.post(f"/api/v1/datasets/{name}/credentials", json={"version": 1}))
    hidden(b.put(f"/api/v1/datasets/{name}", json={"description": "mine now"}))
    hidden(b.delete(f"/api/v1/datasets/{name}"))
    hidden(b.post(f"/api/v1/datasets/{name}/restore"))
    detail = data(tenants.a.get(f"/api/v1/datasets/{name}"))
    assert detail["description"] is None and detail["archived_at"] is None  # nothing B sent took effect


def test_tenant_b_cannot_reach_a_knowledge_base(tenants: Tenants) -> None:
    b, kb = tenants.b, A_KB
    hidden(b.get(f"/api/v1/knowledge-bases/{kb}"))
    hidden(b.get(f"/api/v1/knowledge-bases/{kb}/documents"))
    hidden(b.post(f"/api/v1/knowledge-bases/{kb}/search", json={"query": "holiday allowance"}))
    files = {"file": ("evil.md", b"# Evil\n\nReplaced.\n", "text/markdown")}
    hidden(b.post(f"/api/v1/knowledge-bases/{kb}/documents", files=files))
    hidden(b.delete(f"/api/v1/knowledge-bases/{kb}/documents/{tenants.document}"))
    hidden(b.post("/api/v1/ask", json={"question": "How many holiday days?", "kb": kb}))
    chat = {"model": f"kb:{kb}", "messages": [{"role": "user", "content": "How many holiday days?"}]}
    gateway = b.post("/v1/chat/completions", json=chat)
    assert gateway.status_code == 404 and "27 days" not in gateway.text and "acme" not in gateway.text
    assert (
        gateway.json()["error"]["message"]
        == f"no knowledge base named '{kb}'; the catalog holds no knowledge bases yet"
    )
    [document] = data(tenants.a.get(f"/api/v1/knowledge-bases/{kb}/documents"))["items"]
    assert document["status"] == "indexed"  # B's upload and delete never happened


def test_tenant_b_sql_sees_only_its_own_tables(tenants: Tenants) -> None:
    b = tenants.b
    own = data(b.post("/api/v1/query/execute", json={"sql": "SELECT count(*) AS n FROM regions"}))
    assert own["rows"] == [[4]]
    unknown = refused(b.post("/api/v1/query/execute", json={"sql": A_ROWS}), 400, 40001)
    assert A_DATASET in unknown["message"] and B_DATASET in unknown["message"], unknown  # known: B's alone
    hidden(b.post("/api/v1/query/execute", json={"sql": "SELECT 1", "datasets": [A_DATASET]}))
    hidden(b.post("/api/v1/query/validate", json={"sql": "SELECT 1", "datasets": [A_DATASET]}))
    hidden(b.post("/api/v1/ask", json={"question": "How many orders?", "datasets": [A_DATASET]}))
    tables = [table["name"] for table in data(b.get("/api/v1/metadata/databases/datasets/tables"))]
    assert tables == [B_DATASET]
    hidden(b.get(f"/api/v1/metadata/databases/datasets/tables/{A_DATASET}"))
    matches = data(b.post("/api/v1/metadata/tables/search", json={"query": "orders status amount"}))
    assert [match["table"] for match in matches] == [B_DATASET]


def test_tenant_b_cannot_read_a_conversation_webhook_or_run(tenants: Tenants) -> None:
    b = tenants.b
    hidden(b.get(f"/api/v1/conversations/{tenants.conversation}"))
    hidden(b.delete(f"/api/v1/conversations/{tenants.conversation}"))
    hidden(
        b.post("/api/v1/ask", json={"question": "and?", "kb": A_KB, "conversation_id": tenants.conversation})
    )
    hidden(b.get(f"/api/v1/webhooks/{tenants.webhook}"))
    hidden(b.delete(f"/api/v1/webhooks/{tenants.webhook}"))
    hidden(b.get(f"/api/v1/runs/{tenants.dataset_run}"))
    messages = data(tenants.a.get(f"/api/v1/conversations/{tenants.conversation}"))["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant"]


def test_a_webhook_hears_only_its_tenant_events(tenants: Tenants) -> None:
    """B's query is written before A's; once the outbox is fanned out, A's webhook holds A's alone."""
    data(tenants.b.post("/api/v1/query/execute", json={"sql": B_ROWS}))
    data(tenants.a.post("/api/v1/query/execute", json={"sql": A_ROWS}))
    tenants.api.resources.catalog.fan_out_events(utcnow())
    deliveries = data(tenants.a.get(f"/api/v1/webhooks/{tenants.webhook}"))["deliveries"]
    assert [delivery["event_type"] for delivery in deliveries] == ["query.completed"]


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with catalog_engine(request.param, tmp_path, "ods_test_tenants_") as engine:
        yield engine


def test_migration_0012_puts_existing_rows_in_the_default_tenant(empty_engine: Engine) -> None:
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0011")
        connection.execute(
            text("INSERT INTO datasets (name, created_at, tags) VALUES ('old_sales', :now, '[]')"),
            {"now": utcnow()},
        )
        connection.execute(
            text(
                "INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c1', 'hi', :now, :now)"
            ),
            {"now": utcnow()},
        )
    assert migrate(empty_engine) == head_revision()

    catalog = Catalog(empty_engine)
    assert [(record.name, record.tenant) for record in catalog.list_datasets()] == [("old_sales", "default")]
    assert [record.name for record in catalog.list_datasets(tenant="acme")] == []
    assert [(record.id, record.tenant) for record in catalog.list_conversations()] == [("c1", "default")]

    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0011")
    for table in TENANT_TABLES:
        assert "tenant" not in {column["name"] for column in inspect(empty_engine).get_columns(table)}, table
    migrate(empty_engine)


def test_the_cli_and_flows_create_in_ods_tenant(tmp_path: Path) -> None:
    """ODS_TENANT is the tenant of what a catalog opened from the settings creates without naming one."""
    settings = load_settings(home=tmp_path / "ods-home", tenant="acme")
    with open_catalog(settings) as catalog:
        assert catalog.ensure_dataset("orders").tenant == "acme"
        assert catalog.ensure_model("ranker").tenant == "acme"
        assert catalog.create_conversation("hi").tenant == "acme"
        kb = catalog.ensure_knowledge_base("docs", embedding_model="m", embedding_dim=4, collection_name="c")
        assert kb.tenant == "acme"
        assert catalog.ensure_dataset("shared", tenant="globex").tenant == "globex"  # the API names its own
    with pytest.raises(SettingsError, match="tenant 'Not Valid' is not valid"):
        load_settings(home=tmp_path / "ods-home", tenant="Not Valid")
