"""The write side of knowledge bases in `ods serve`: create one, upload documents, follow the ingest run,
delete a document, and the bad input an upload can bring (oversized, hostile names, unknown names).

One real server per module (uvicorn, free loopback port) over a SQLite catalog, the local object store,
Milvus Lite and the packaged embedder; the ingest runs inside the server process, on its open index.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ods.adapters.object_store.minio_store import MinioObjectStore
from ods.settings import load_settings
from tests.support.api_envelope import data, refused
from tests.support.api_server import KB, RunningApi, running_api, served_platform
from tests.support.s3_server import S3Server

UPLOAD_LIMIT = 8 * 1024
HANDBOOK = "handbook"
HOLIDAYS = (
    b"# Holidays\n\nEvery employee has an annual holiday allowance of 27 days, booked through the rota.\n"
)
PARKING = (
    b"# Parking\n\nParking permits for the staff car park are issued by the front desk on the ground floor.\n"
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    # Polling the runs makes many requests in a few seconds: no rate limit here (test_api_keys has them).
    limits = {"max_body_bytes": 16 * 1024, "max_upload_bytes": UPLOAD_LIMIT, "rate_limit_metadata": 0}
    with served_platform(tmp_path_factory.mktemp("api-kb-writes"), api=limits) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


@pytest.fixture(scope="module")
def handbook(client: httpx.Client) -> str:
    body = {"name": HANDBOOK, "description": "Staff handbook: holidays, parking, lockers."}
    data(client.post("/api/v1/knowledge-bases", json=body), status=201)
    return HANDBOOK


def upload(client: httpx.Client, kb: str, name: str, content: bytes) -> httpx.Response:
    return client.post(
        f"/api/v1/knowledge-bases/{kb}/documents", files={"file": (name, content, "text/markdown")}
    )


def raw_upload(client: httpx.Client, kb: str, name: str, content: bytes) -> httpx.Response:
    """An upload whose file name goes into the multipart header as given (httpx would percent-encode
    control characters), as a hostile client would send it."""
    boundary = "ods-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/markdown\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        f"/api/v1/knowledge-bases/{kb}/documents",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def finished_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The run once it completed or failed (pytest-timeout stops a run that never ends)."""
    while True:
        run: dict[str, Any] = data(client.get(f"/api/v1/runs/{run_id}"))
        if run["state"] in ("completed", "failed"):
            return run
        time.sleep(0.2)


def search_uris(client: httpx.Client, kb: str, query: str) -> list[str]:
    found = data(client.post(f"/api/v1/knowledge-bases/{kb}/search", json={"query": query, "top_k": 5}))
    return [hit["doc_uri"].rsplit("/", 1)[-1] for hit in found["hits"]]


def test_create_upload_search_and_delete(api: RunningApi, client: httpx.Client, handbook: str) -> None:
    listed = data(client.get("/api/v1/knowledge-bases"))
    again = client.post("/api/v1/knowledge-bases", json={"name": handbook})

    first = data(upload(client, handbook, "holidays.md", HOLIDAYS), status=202)
    second = data(upload(client, handbook, "parking.md", PARKING), status=202)
    runs = [finished_run(client, first["run"]["id"]), finished_run(client, second["run"]["id"])]
    documents = data(client.get(f"/api/v1/knowledge-bases/{handbook}/documents"))["items"]

    created = next(kb for kb in listed if kb["name"] == handbook)
    assert created["source_uri"].rstrip("/").endswith("docs/handbook")
    assert created["description"] == "Staff handbook: holidays, parking, lockers."
    assert refused(again, 409, 40901)["message"].startswith(f"knowledge base {handbook!r} exists")
    assert first["uri"].endswith("/docs/handbook/holidays.md") and first["size"] == len(HOLIDAYS)
    assert [run["state"] for run in runs] == ["completed", "completed"], runs
    assert sum(run["result"]["indexed"] for run in runs) == 2 and runs[0]["seconds"] >= 0
    assert sorted((doc["uri"].rsplit("/", 1)[-1], doc["status"]) for doc in documents) == [
        ("holidays.md", "indexed"),
        ("parking.md", "indexed"),
    ]
    assert search_uris(client, handbook, "How many days of holiday allowance?")[0] == "holidays.md"
    assert search_uris(client, handbook, "Who issues parking permits?")[0] == "parking.md"

    holidays = next(doc for doc in documents if doc["uri"].endswith("holidays.md"))
    deleted = data(
        client.delete(f"/api/v1/knowledge-bases/{handbook}/documents/{holidays['id']}"), status=202
    )
    deleting = finished_run(client, deleted["run"]["id"])
    again_deleted = client.delete(f"/api/v1/knowledge-bases/{handbook}/documents/{holidays['id']}")
    unknown = client.delete(f"/api/v1/knowledge-bases/{handbook}/documents/999999")

    assert deleting["state"] == "completed" and deleting["result"]["deleted"] == 1, deleting
    assert "holidays.md" not in search_uris(client, handbook, "How many days of holiday allowance?")
    statuses = {
        doc["uri"].rsplit("/", 1)[-1]: doc["status"]
        for doc in data(client.get(f"/api/v1/knowledge-bases/{handbook}/documents"))["items"]
    }
    assert statuses == {"holidays.md": "deleted", "parking.md": "indexed"}
    assert "already deleted" in refused(again_deleted, 404, 40401)["message"]
    assert "has no document 999999" in refused(unknown, 404, 40401)["message"]


def test_the_same_file_uploaded_twice_at_once_is_one_document(client: httpx.Client, handbook: str) -> None:
    content = b"# Lockers\n\nLockers on the second floor are assigned by the facilities team each January.\n"
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: upload(client, handbook, "lockers.md", content), range(2)))
    runs = [finished_run(client, data(answer, status=202)["run"]["id"]) for answer in answers]
    repeated = data(upload(client, handbook, "lockers.md", content), status=202)
    repeat_run = finished_run(client, repeated["run"]["id"])

    documents = data(client.get(f"/api/v1/knowledge-bases/{handbook}/documents"))["items"]
    lockers = [doc for doc in documents if doc["uri"].endswith("/lockers.md")]
    assert all(run["state"] == "completed" for run in [*runs, repeat_run]), runs
    assert len(lockers) == 1 and lockers[0]["status"] == "indexed"
    assert repeat_run["result"]["indexed"] == 0 and repeat_run["result"]["unchanged"] >= 1
    assert search_uris(client, handbook, "Who assigns the lockers?")[0] == "lockers.md"


def test_a_document_the_ingest_refuses_is_quarantined_with_its_reason(
    client: httpx.Client, handbook: str
) -> None:
    stored = data(upload(client, handbook, "scan.pdf", b"%PDF-1.7 this is not really a PDF"), status=202)
    run = finished_run(client, stored["run"]["id"])
    quarantined = data(
        client.get(f"/api/v1/knowledge-bases/{handbook}/documents", params={"status": "quarantined"})
    )

    assert run["state"] == "completed" and run["result"]["quarantined"] == 1, run
    assert run["result"]["quarantined_documents"][0]["uri"].endswith("/scan.pdf")
    [document] = quarantined["items"]
    assert document["uri"].endswith("/scan.pdf") and document["reason"]


def test_an_oversized_upload_is_refused(client: httpx.Client, handbook: str) -> None:
    over = upload(client, handbook, "big.md", b"x" * (UPLOAD_LIMIT + 1))
    far_over = upload(client, handbook, "huge.md", b"x" * (UPLOAD_LIMIT + 200 * 1024))
    empty = upload(client, handbook, "empty.md", b"")

    assert "ODS_API__MAX_UPLOAD_BYTES" in refused(over, 400, 40001)["message"]
    assert over.json()["details"]["field"] == "body.file"
    assert "ODS_API__MAX_UPLOAD_BYTES" in refused(far_over, 413, 40001)["message"]
    assert "empty" in refused(empty, 400, 40001)["message"]
    names = [doc["uri"] for doc in data(client.get(f"/api/v1/knowledge-bases/{handbook}/documents"))["items"]]
    assert not any(name.endswith(("big.md", "huge.md", "empty.md")) for name in names)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../escape.md", "holds a folder"),
        ("nested/notes.md", "holds a folder"),
        ("..", "holds a folder"),
        (".hidden.md", 'starts with "."'),
        ("bell\x07.md", "control character"),
        ("line\u2028break.md", "separator"),
    ],
)
def test_hostile_file_names_are_refused(
    api: RunningApi, client: httpx.Client, handbook: str, name: str, reason: str
) -> None:
    response = raw_upload(client, handbook, name, b"# Note\n\nA short note.\n")
    body = refused(response, 400, 40001)
    assert body["details"]["field"] == "body.file" and reason in body["message"], body
    store_root = api.settings.object_store_root
    assert not (store_root / "escape.md").exists() and not (store_root / "docs" / "escape.md").exists()


def test_unknown_and_bad_knowledge_base_names(client: httpx.Client) -> None:
    unknown = upload(client, "nope", "notes.md", b"text")
    bad_name = upload(client, "Bad..Name", "notes.md", b"text")
    bad_create = client.post("/api/v1/knowledge-bases", json={"name": "../escape"})
    unknown_delete = client.delete("/api/v1/knowledge-bases/nope/documents/1")

    assert "'nope'" in refused(unknown, 404, 40401)["message"]
    refused(bad_name, 400, 40001)
    assert refused(bad_create, 400, 40001)["details"]["field"] == "body.name"
    refused(unknown_delete, 404, 40401)


def test_a_knowledge_base_ingested_from_a_folder_takes_no_upload(client: httpx.Client) -> None:
    response = upload(client, KB, "notes.md", b"# Note\n\nA short note.\n")
    assert "ingested from" in refused(response, 409, 40901)["message"]


def test_unknown_runs(client: httpx.Client) -> None:
    refused(client.get(f"/api/v1/runs/{'0' * 32}"), 404, 40401)
    assert refused(client.get("/api/v1/runs/not-a-run"), 400, 40001)["details"]["field"] == "path.run_id"


@pytest.mark.s3
def test_uploads_and_deletes_on_an_s3_store(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, s3_store: MinioObjectStore
) -> None:
    """The same round trip with the documents in a bucket: stored as docs/<kb>/<name>, ingested from
    s3://bucket/docs/<kb>/ by the server, removed from the bucket and the index on delete."""
    settings = load_settings(
        home=tmp_path_factory.mktemp("api-kb-writes-s3") / "ods-home",
        object_store={
            "kind": "minio",
            "endpoint": s3_server.endpoint,
            "bucket": s3_store.bucket,
            "access_key": s3_server.access_key,
            "secret_key": s3_server.secret_key,
        },
    )
    with running_api(settings) as served, httpx.Client(base_url=served.base_url, timeout=120) as client:
        created = data(client.post("/api/v1/knowledge-bases", json={"name": "manuals"}), status=201)
        stored = data(upload(client, "manuals", "parking.md", PARKING), status=202)
        indexed = finished_run(client, stored["run"]["id"])
        [document] = data(client.get("/api/v1/knowledge-bases/manuals/documents"))["items"]
        found = search_uris(client, "manuals", "Who issues parking permits?")
        removed = data(
            client.delete(f"/api/v1/knowledge-bases/manuals/documents/{document['id']}"), status=202
        )
        deleting = finished_run(client, removed["run"]["id"])
        after = search_uris(client, "manuals", "Who issues parking permits?")

    assert created["source_uri"] == f"s3://{s3_store.bucket}/docs/manuals/"
    assert stored["uri"] == f"s3://{s3_store.bucket}/docs/manuals/parking.md"
    assert indexed["state"] == "completed" and indexed["result"]["indexed"] == 1, indexed
    assert document["uri"] == stored["uri"] and found == ["parking.md"]
    assert deleting["state"] == "completed" and deleting["result"]["deleted"] == 1, deleting
    assert after == [] and not s3_store.exists("docs/manuals/parking.md")
