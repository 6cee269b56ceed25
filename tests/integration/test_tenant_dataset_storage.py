"""Where a tenant's dataset objects land: a dataset tenant ``acme`` registers through the API keeps its
Parquet versions, quarantined rows and cards under ``tenants/acme/datasets/<name>/``, and previews,
downloads and SQL read them there through the URI the catalog records; the ``default`` tenant keeps the
keys it had before tenants existed; registering the same input again writes nothing.

One real server (uvicorn, loopback) over a local platform (SQLite catalog, local object store); one
service account per tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ods.adapters.object_store import ObjectStore
from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from tests.support.api_envelope import data, finished_run
from tests.support.api_server import running_api

ORDERS_CSV = b"id,status,amount\n1,paid,10.5\n2,pending,3\n3,paid,7.25\n4,refunded,12\n"
PAID_ONLY = {"in_set": {"column": "status", "values": ["paid"]}}


def spec(name: str, *expectations: dict[str, Any]) -> dict[str, Any]:
    checks = [{"not_null": {"column": "id"}}, *expectations]
    return {"name": name, "source": {"uri": "orders.csv"}, "expectations": checks}


@dataclass(frozen=True)
class Platform:
    store: ObjectStore
    source: str
    acme: httpx.Client
    default: httpx.Client


def register(client: httpx.Client, source: str, body: dict[str, Any]) -> dict[str, Any]:
    """The result of the prepare run a registration starts."""
    started = data(client.post("/api/v1/datasets", json={"spec": body, "source_uri": source}), 202)
    run = finished_run(client, started["run"]["id"])
    assert run["result"] is not None, run
    return dict(run["result"])


def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return sorted(info.key for info in store.list(prefix))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = load_settings(home=tmp_path_factory.mktemp("tenant-datasets") / "ods-home")
    with open_catalog(settings) as catalog:
        made = {
            tenant: create_api_key(catalog, f"{tenant}-data", roles=["data_admin"], tenant=tenant).key
            for tenant in ("acme", "default")
        }
    store = build_object_store(settings)
    store.put_bytes("raw/orders.csv", ORDERS_CSV)
    with (
        running_api(settings) as api,
        httpx.Client(base_url=api.base_url, timeout=120, headers=_bearer(made["acme"])) as acme,
        httpx.Client(base_url=api.base_url, timeout=120, headers=_bearer(made["default"])) as default,
    ):
        yield Platform(store, store.uri("raw/orders.csv"), acme, default)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_tenants_dataset_lands_under_its_prefix_and_reads_work(platform: Platform) -> None:
    result = register(platform.acme, platform.source, spec("orders"))
    assert result["status"] == "registered", result
    assert "/tenants/acme/datasets/orders/" in result["uri"]
    assert result["card_uri"].endswith("tenants/acme/datasets/orders/cards/v1.md")
    stored = keys(platform.store, "tenants/acme/datasets/orders/")
    assert stored == [
        f"tenants/acme/datasets/orders/{result['content_hash']}.parquet",
        "tenants/acme/datasets/orders/cards/v1.md",
    ]
    assert keys(platform.store, "datasets/") == []  # nothing of acme's at the shared prefix

    detail = data(platform.acme.get("/api/v1/datasets/orders"))
    assert detail["versions"][0]["card_uri"] == result["card_uri"]
    rows = data(platform.acme.get("/api/v1/datasets/orders/versions/1/rows", params={"limit": 10}))
    ids = [row[rows["columns"].index("id")] for row in rows["rows"]]
    assert rows["total_rows"] == 4 and ids == ["1", "2", "3", "4"], rows
    url = data(platform.acme.post("/api/v1/datasets/orders/credentials", json={"version": 1}))["url"]
    downloaded = httpx.get(url, timeout=60)
    assert downloaded.status_code == 200
    assert downloaded.content == platform.store.get_bytes(stored[0])
    query = {"sql": "SELECT count(*) AS paid FROM orders WHERE status = 'paid'"}
    answer = data(platform.acme.post("/api/v1/query/execute", json=query))
    assert answer["rows"] == [[2]], answer


def test_a_tenants_rejected_version_quarantines_under_its_prefix(platform: Platform) -> None:
    result = register(platform.acme, platform.source, spec("paid_orders", PAID_ONLY))
    assert result["status"] == "rejected", result
    assert "/tenants/acme/datasets/paid_orders/quarantine/" in result["quarantine_uri"]
    assert result["quarantined_rows"] == 2
    assert result["card_uri"].endswith("tenants/acme/datasets/paid_orders/cards/v1.md")


def test_the_default_tenant_keeps_its_keys(platform: Platform) -> None:
    result = register(platform.default, platform.source, spec("regions"))
    assert result["status"] == "registered", result
    assert keys(platform.store, "datasets/regions/") == [
        f"datasets/regions/{result['content_hash']}.parquet",
        "datasets/regions/cards/v1.md",
    ]
    assert keys(platform.store, "tenants/default/") == []


def test_registering_the_same_input_again_changes_nothing(platform: Platform) -> None:
    first = register(platform.acme, platform.source, spec("returns"))
    before = [(info.key, info.sha256) for info in platform.store.list("tenants/acme/")]
    again = register(platform.acme, platform.source, spec("returns"))
    assert again == first
    assert [(info.key, info.sha256) for info in platform.store.list("tenants/acme/")] == before
    versions = data(platform.acme.get("/api/v1/datasets/returns"))["versions"]
    assert [version["version"] for version in versions] == [1]
