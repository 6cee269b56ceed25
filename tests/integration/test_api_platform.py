"""The read routes of `ods serve` over a real platform: datasets, knowledge bases, search, SQL, models.

One real server per module (uvicorn, free loopback port) over a SQLite catalog, the local object store,
Milvus Lite and the packaged embedder; what each route answers is compared with the catalog's own view.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from ods.factories import build_object_store, open_catalog
from ods.stages.prepare import dataset_prefix, frame_schema, store_card, write_parquet
from tests.support.api_envelope import data
from tests.support.api_server import DATASET, KB, RunningApi, served_platform
from tests.support.postgres import temporary_database


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with served_platform(tmp_path_factory.mktemp("api-platform")) as running:
        yield running


@pytest.fixture
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


def test_datasets_are_listed_with_filters_and_pages(client: httpx.Client) -> None:
    listed = data(client.get("/api/v1/datasets"))
    registered = data(client.get("/api/v1/datasets", params={"status": "registered"}))
    rejected = data(client.get("/api/v1/datasets", params={"status": "rejected"}))
    second_page = data(client.get("/api/v1/datasets", params={"page": 2, "page_size": 1}))

    assert [item["name"] for item in listed["items"]] == [DATASET]
    assert listed["items"][0]["latest_version"] == 1 and listed["items"][0]["latest_status"] == "registered"
    assert (listed["total"], listed["pages"]) == (1, 1)
    assert registered["total"] == 1 and rejected == {
        "items": [],
        "page": 1,
        "page_size": 20,
        "total": 0,
        "pages": 0,
    }
    assert second_page["items"] == [] and second_page["total"] == 1


def test_a_dataset_shows_versions_schema_profile_and_lineage(api: RunningApi, client: httpx.Client) -> None:
    with open_catalog(api.settings) as catalog:
        record = catalog.get_dataset_version(DATASET)
    # as the flow's last step does
    card = store_card(build_object_store(api.settings), record, "# sales\n", "default")

    detail = data(client.get(f"/api/v1/datasets/{DATASET}"))

    [version] = detail["versions"]
    assert (version["version"], version["status"], version["row_count"]) == (
        1,
        "registered",
        record.row_count,
    )
    assert version["uri"] == record.uri and version["content_hash"] == record.content_hash
    assert [column["name"] for column in version["schema"]["columns"]][:2] == ["order_id", "order_date"]
    assert version["profile"]["columns"]["customer_email"]["pii_kind"] == "email"
    assert version["lineage"]["source_uri"].endswith("sales.csv")
    assert version["lineage"]["source_sha256"] == record.source_sha256
    assert len(version["validation_runs"]) == 1 and version["validation_runs"][0]["success"] is True
    assert version["card_uri"] == card and card.endswith("datasets/sales/cards/v1.md")


def test_rows_are_paged(api: RunningApi, client: httpx.Client) -> None:
    first = data(client.get(f"/api/v1/datasets/{DATASET}/versions/1/rows", params={"limit": 7}))
    later = data(client.get(f"/api/v1/datasets/{DATASET}/versions/1/rows", params={"offset": 3, "limit": 4}))
    past_the_end = data(client.get(f"/api/v1/datasets/{DATASET}/versions/1/rows", params={"offset": 10_000}))
    missing = client.get(f"/api/v1/datasets/{DATASET}/versions/9/rows")
    too_many = client.get(f"/api/v1/datasets/{DATASET}/versions/1/rows", params={"limit": 5000})

    with open_catalog(api.settings) as catalog:
        stored_rows = catalog.get_dataset_version(DATASET, 1).row_count
    assert first["columns"][0] == "order_id" and len(first["rows"]) == 7
    assert first["total_rows"] == stored_rows and 280 < stored_rows <= 300  # duplicates dropped
    assert later["rows"] == first["rows"][3:7]
    assert "@" in first["rows"][0][first["columns"].index("customer_email")]  # masked, still an address
    assert past_the_end["rows"] == []
    assert missing.status_code == 404 and missing.json()["code"] == 40401
    assert too_many.status_code == 400 and too_many.json()["details"]["field"] == "query.limit"


def test_knowledge_bases_and_their_documents(client: httpx.Client) -> None:
    listed = data(client.get("/api/v1/knowledge-bases"))
    status = data(client.get(f"/api/v1/knowledge-bases/{KB}"))
    documents = data(client.get(f"/api/v1/knowledge-bases/{KB}/documents"))
    quarantined = data(
        client.get(f"/api/v1/knowledge-bases/{KB}/documents", params={"status": "quarantined"})
    )
    unknown = client.get("/api/v1/knowledge-bases/nope/documents")

    assert [kb["name"] for kb in listed] == [KB] and listed[0]["embedding_model"] == "all-MiniLM-L6-v2"
    assert status["documents"] == {"indexed": 4} and status["indexed_chunks"] >= 4
    # sample_platform writes no search snapshots: BM25 runs on Milvus Lite, whose analyzer is "standard".
    assert status["analyzer"] == "standard" and status["fusion"].startswith("convex combination"), status
    names = sorted(item["uri"].rsplit("/", 1)[-1] for item in documents["items"])
    assert names == ["regions.txt", "returns-policy.md", "shipping.md", "warranty.html"]
    assert all(item["status"] == "indexed" and item["chunk_count"] >= 1 for item in documents["items"])
    assert quarantined["items"] == []
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["message"]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_finds_the_passage_in_every_mode(client: httpx.Client, mode: str) -> None:
    found = data(
        client.post(
            f"/api/v1/knowledge-bases/{KB}/search",
            json={"query": "How many days do customers have to return a product?", "mode": mode, "top_k": 2},
        )
    )
    assert found["mode"] == mode and len(found["hits"]) == 2
    best = found["hits"][0]
    assert best["rank"] == 1 and best["doc_uri"].endswith("returns-policy.md")
    assert "within 30 days" in best["text"]
    assert (found["best_similarity"] is None) == (mode == "bm25")


def test_concurrent_requests_share_the_open_index_and_model(client: httpx.Client) -> None:
    queries = [
        ("How many days do customers have to return a product?", "returns-policy.md"),
        ("Which warehouse ships orders placed before 2 pm?", "shipping.md"),
        ("How long is the warranty on a gadget?", "warranty.html"),
        ("Which region is served from Bristol?", "regions.txt"),
    ] * 4

    def search(item: tuple[str, str], mode: str) -> str:
        body = {"query": item[0], "mode": mode, "top_k": 1}
        return str(data(client.post(f"/api/v1/knowledge-bases/{KB}/search", json=body))["hits"][0]["doc_uri"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(search, queries, ["dense", "hybrid"] * (len(queries) // 2)))
        listed = list(pool.map(lambda _: data(client.get("/api/v1/datasets"))["total"], range(8)))

    assert [uri.rsplit("/", 1)[-1] for uri in found] == [expected for _, expected in queries]
    assert listed == [1] * 8


def test_search_keeps_to_the_documents_named(client: httpx.Client) -> None:
    query = "How many days do customers have to return a product?"
    url = f"/api/v1/knowledge-bases/{KB}/search"
    found = data(client.post(url, json={"query": query, "documents": ["shipping.md"], "top_k": 3}))
    unknown = client.post(url, json={"query": query, "documents": ["nope.md"]})
    assert found["hits"] and all(hit["doc_uri"].endswith("shipping.md") for hit in found["hits"])
    assert unknown.status_code == 400 and "'nope.md'" in unknown.json()["message"]


def test_search_refuses_an_empty_query(client: httpx.Client) -> None:
    blank = client.post(f"/api/v1/knowledge-bases/{KB}/search", json={"query": "   "})
    assert blank.status_code == 400 and "the query is empty" in blank.json()["message"]


def test_sql_is_validated_and_run_through_the_guard(client: httpx.Client) -> None:
    sql = "SELECT region, COUNT(*) AS orders FROM sales GROUP BY region ORDER BY orders DESC, region"
    checked = data(client.post("/api/v1/query/validate", json={"sql": sql}))
    ran = data(client.post("/api/v1/query/execute", json={"sql": sql, "max_rows": 2}))
    refused_check = data(client.post("/api/v1/query/validate", json={"sql": "DELETE FROM sales"}))

    assert checked["allowed"] is True and checked["tables"] == ["sales"] and "LIMIT" in checked["sql"]
    assert ran["columns"] == ["region", "orders"] and ran["row_count"] == 2 and ran["truncated"] is True
    assert all(isinstance(row[1], int) for row in ran["rows"])
    assert refused_check["allowed"] is False and "DELETE" in refused_check["reason"]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE sales", "DROP statements are not allowed"),
        ("SELECT * FROM sales; SELECT 1", "only one SQL statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT * FROM secrets", "secrets"),
    ],
)
def test_sql_the_guard_refuses_is_400_and_never_run(client: httpx.Client, sql: str, reason: str) -> None:
    response = client.post("/api/v1/query/execute", json={"sql": sql})
    body = response.json()
    assert response.status_code == 400 and body["code"] == 40001, response.text
    assert body["details"]["field"] == "body.sql" and reason.lower() in body["details"]["reason"].lower()


def test_sql_over_an_unknown_dataset_is_404(client: httpx.Client) -> None:
    response = client.post("/api/v1/query/execute", json={"sql": "SELECT 1", "datasets": ["orders"]})
    assert response.status_code == 404 and "'orders'" in response.json()["message"]


def test_models_show_versions_metrics_lineage_and_endpoints(api: RunningApi, client: httpx.Client) -> None:
    with open_catalog(api.settings) as catalog:  # a version as the train-model flow records one
        trained_on = catalog.get_dataset_version(DATASET)
        version = catalog.add_model_version(
            "returns-model",
            trainer="tabular",
            params={"max_iter": 50},
            metrics={"accuracy": 0.91},
            artifact_uri="file:///models/returns-model/run-1/",
            dataset_version_id=trained_on.id,
        )
        catalog.add_endpoint(version.id, backend="transformers", url="http://127.0.0.1:9/v1", status="failed")
        catalog.add_endpoint(version.id, backend="vllm", url="http://127.0.0.1:8/v1", status="active")

    listed = data(client.get("/api/v1/models"))
    detail = data(client.get("/api/v1/models/returns-model"))
    unknown = client.get("/api/v1/models/churn")

    assert [(model["name"], model["latest_version"], model["version_count"]) for model in listed] == [
        ("returns-model", 1, 1)
    ]
    [shown] = detail["versions"]
    assert (shown["trainer"], shown["metrics"], shown["params"]) == (
        "tabular",
        {"accuracy": 0.91},
        {"max_iter": 50},
    )
    assert shown["trained_on"] == {
        "dataset": DATASET,
        "version": 1,
        "dataset_version_id": trained_on.id,
        "content_hash": trained_on.content_hash,
    }
    assert [(endpoint["status"], endpoint["backend"]) for endpoint in detail["endpoints"]] == [
        ("active", "vllm"),
        ("failed", "transformers"),
    ]
    served = client.get("/v1/models").json()["data"]
    assert {"id": "returns-model", "owned_by": "ods-endpoint"}.items() <= served[-1].items()
    assert unknown.status_code == 404 and unknown.json()["code"] == 40401
    assert "'churn'" in unknown.json()["message"]


def test_sql_sees_a_dataset_registered_while_the_server_runs(api: RunningApi, client: httpx.Client) -> None:
    """Warehouses are kept per set of dataset versions: a version registered later makes a new set (never a
    stale answer), and concurrent queries on one kept warehouse take turns."""
    count = "SELECT COUNT(*) AS n FROM sales"
    before = data(client.post("/api/v1/query/execute", json={"sql": count}))
    frame = pd.DataFrame({"region": ["North", "West"], "hub": ["Leeds", "Bristol"]})
    written = write_parquet(build_object_store(api.settings), dataset_prefix("regions"), frame)
    with open_catalog(api.settings) as catalog:
        catalog.add_dataset_version(
            "regions",
            content_hash=written.content_hash,
            uri=written.uri,
            schema=frame_schema(frame),
            profile={},
            row_count=len(frame),
            size_bytes=written.size_bytes,
            status="registered",
        )

    join = (
        "SELECT r.hub, COUNT(*) AS n FROM sales AS s JOIN regions AS r ON s.region = r.region GROUP BY r.hub"
    )
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(
                lambda sql: data(client.post("/api/v1/query/execute", json={"sql": sql}))["rows"],
                [count, join + " ORDER BY r.hub"] * 3,
            )
        )
    only_sales = data(client.post("/api/v1/query/execute", json={"sql": count, "datasets": ["sales"]}))

    assert answers[0] == answers[2] == answers[4] == before["rows"] == only_sales["rows"]
    assert [hub for hub, _ in answers[1]] == ["Bristol", "Leeds"] and answers[1] == answers[3] == answers[5]


@pytest.mark.postgres
def test_a_postgresql_catalog_serves_concurrent_requests(tmp_path: Path) -> None:
    """The same platform on the PostgreSQL catalog a cluster uses: one engine, its pool shared by the
    request threads; a chat turn written through it is read back."""
    with (
        temporary_database("ods_api_") as url,
        served_platform(tmp_path, catalog={"url": url}) as api,
        httpx.Client(base_url=api.base_url, timeout=120) as client,
    ):
        with ThreadPoolExecutor(max_workers=6) as pool:
            totals = list(pool.map(lambda _: data(client.get("/api/v1/datasets"))["total"], range(6)))
            hits = list(
                pool.map(
                    lambda query: data(
                        client.post(f"/api/v1/knowledge-bases/{KB}/search", json={"query": query, "top_k": 1})
                    )["hits"][0]["doc_uri"],
                    ["returns within 30 days", "two year warranty"] * 3,
                )
            )
        chat = client.post(
            "/v1/chat/completions",
            json={
                "model": f"kb:{KB}",
                "messages": [{"role": "user", "content": "How long is the warranty?"}],
            },
        ).json()
        with open_catalog(api.settings) as catalog:
            kept = catalog.get_conversation(chat["conversation_id"])

    assert totals == [1] * 6
    assert [uri.rsplit("/", 1)[-1] for uri in hits] == ["returns-policy.md", "warranty.html"] * 3
    assert "two year warranty" in chat["choices"][0]["message"]["content"]
    assert [message.role for message in kept.messages] == ["user", "assistant"]
