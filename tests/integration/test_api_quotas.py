"""Per-tenant quotas as callers meet them: uploads past a tenant's documents or storage bytes and dataset
registrations past its storage are refused with 409 (code 40901) naming the figures and what to do;
requests past its requests per minute get 429 (code 42901) with Retry-After; other tenants are not
touched; ``GET /api/v1/tenants/current`` shows usage against quota.

One real server (uvicorn, loopback) over an empty local platform (SQLite catalog, local object store,
Milvus Lite, the packaged embedder); one super_admin service account per tenant, each tenant with its
own quota (``ODS_QUOTAS__TENANTS``); usage is measured on every check (``usage_cache_s=0``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_envelope import data, finished_run, refused
from tests.support.api_server import running_api

CONFLICT, RATE_LIMITED = 40901, 42901
QUOTAS = {
    "docs": {"documents": 2},
    "bytes": {"storage_bytes": 1000},
    "data": {"storage_bytes": 100},
    "busy": {"requests_per_minute": 3},
}
ORDERS_CSV = b"id,status,amount\n1,paid,10.5\n2,pending,3\n3,paid,7.25\n"


@dataclass(frozen=True)
class Platform:
    clients: dict[str, httpx.Client]
    raw_uri: str


def note(size: int, title: str = "Note") -> bytes:
    """A markdown document of exactly ``size`` bytes."""
    head = f"# {title}\n\n".encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


def upload(client: httpx.Client, kb: str, name: str, body: bytes) -> httpx.Response:
    return client.post(
        f"/api/v1/knowledge-bases/{kb}/documents", files={"file": (name, body, "text/markdown")}
    )


def register(client: httpx.Client, uri: str, name: str) -> httpx.Response:
    spec = {"name": name, "source": {"uri": "orders.csv"}, "expectations": [{"not_null": {"column": "id"}}]}
    return client.post("/api/v1/datasets", json={"spec": spec, "source_uri": uri})


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = load_settings(
        home=tmp_path_factory.mktemp("quotas") / "ods-home",
        api={"rate_limit_metadata": 0},
        quotas={"tenants": QUOTAS, "usage_cache_s": 0},
    )
    with open_catalog(settings) as catalog:
        keys = {
            tenant: create_api_key(catalog, f"{tenant}-admin", roles=["super_admin"], tenant=tenant).key
            for tenant in (*QUOTAS, "free")
        }
    store = build_object_store(settings)
    store.put_bytes("raw/orders.csv", ORDERS_CSV)
    with running_api(settings) as api:
        clients = {
            tenant: httpx.Client(
                base_url=api.base_url, timeout=120, headers={"Authorization": f"Bearer {key}"}
            )
            for tenant, key in keys.items()
        }
        try:
            for tenant in ("docs", "bytes"):
                data(clients[tenant].post("/api/v1/knowledge-bases", json={"name": f"{tenant}_kb"}), 201)
            yield Platform(clients, store.uri("raw/orders.csv"))
        finally:
            for client in clients.values():
                client.close()


def test_an_upload_past_the_documents_quota_is_a_409(platform: Platform) -> None:
    docs = platform.clients["docs"]
    data(upload(docs, "docs_kb", "a.md", note(60, "A")), 202)
    data(upload(docs, "docs_kb", "b.md", note(60, "B")), 202)
    body = refused(upload(docs, "docs_kb", "c.md", note(60, "C")), 409, CONFLICT)
    assert "holds 2 of its 2 documents" in body["message"], body
    assert "ODS_QUOTAS__TENANTS.docs.documents" in body["message"]
    data(upload(docs, "docs_kb", "a.md", note(70, "A again")), 202)  # a replacement adds no document
    status = data(docs.get("/api/v1/tenants/current"))
    assert status["usage"]["documents"] == 2 and status["quota"]["documents"] == 2
    assert status["usage"]["document_bytes"] == 130
    names = {
        item["uri"].rsplit("/", 1)[-1]
        for item in data(docs.get("/api/v1/knowledge-bases/docs_kb/documents"))["items"]
    }
    assert "c.md" not in names


def test_an_upload_past_the_storage_quota_is_a_409(platform: Platform) -> None:
    client = platform.clients["bytes"]
    data(upload(client, "bytes_kb", "big.md", note(600)), 202)
    body = refused(upload(client, "bytes_kb", "bigger.md", note(600)), 409, CONFLICT)
    assert "would take tenant 'bytes' to 1,200 of its 1,000 storage bytes" in body["message"], body
    assert "delete documents or datasets first" in body["message"]
    status = data(client.get("/api/v1/tenants/current"))
    assert status == {
        "tenant": "bytes",
        "usage": {"storage_bytes": 600, "document_bytes": 600, "dataset_bytes": 0, "documents": 1},
        "quota": {"storage_bytes": 1000, "documents": None, "requests_per_minute": None},
    }
    data(upload(client, "bytes_kb", "small.md", note(400)), 202)  # exactly at the quota is allowed


def test_a_dataset_registration_past_the_storage_quota_is_a_409(platform: Platform) -> None:
    client = platform.clients["data"]
    started = data(register(client, platform.raw_uri, "data_orders"), 202)
    assert finished_run(client, started["run"]["id"])["state"] == "completed"
    held = data(client.get("/api/v1/tenants/current"))["usage"]
    assert held["dataset_bytes"] > 100 and held["storage_bytes"] == held["dataset_bytes"]
    body = refused(register(client, platform.raw_uri, "data_more"), 409, CONFLICT)
    assert f"holds {held['storage_bytes']:,} of its 100 storage bytes" in body["message"], body
    assert "registering a version of dataset 'data_more' is refused" in body["message"]
    assert "data_more" not in {item["name"] for item in data(client.get("/api/v1/datasets"))["items"]}


def test_requests_past_the_tenants_rate_are_a_429_with_retry_after(platform: Platform) -> None:
    busy = platform.clients["busy"]
    for _ in range(3):
        data(busy.get("/api/v1/datasets"))
    refusal = busy.get("/api/v1/datasets")
    refused(refusal, 429, RATE_LIMITED)
    assert "tenant 'busy' reached its quota of 3 requests per minute" in refusal.json()["message"]
    assert 1 <= int(refusal.headers["Retry-After"]) <= 60
    gateway = busy.get("/v1/models")  # the OpenAI gateway counts too, and answers in its own shape
    assert gateway.status_code == 429 and gateway.json()["error"]["code"] == "rate_limit_exceeded"
    for _ in range(5):  # another tenant, unlimited, is not slowed by busy's quota
        data(platform.clients["free"].get("/api/v1/datasets"))


def test_a_tenant_without_quota_is_unlimited_and_sees_only_its_usage(platform: Platform) -> None:
    status = data(platform.clients["free"].get("/api/v1/tenants/current"))
    assert status["quota"] == {"storage_bytes": None, "documents": None, "requests_per_minute": None}
    assert status["usage"] == {"storage_bytes": 0, "document_bytes": 0, "dataset_bytes": 0, "documents": 0}
