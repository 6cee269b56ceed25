"""``POST /api/v1/knowledge-bases/{kb}/search`` limited by heading and page, on a real server: a Markdown
document with two headings and a two-page PDF ingested into Milvus Lite with the packaged embedder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ods.settings import load_settings
from ods.stages.sample_data import write_policy_documents
from tests.support.api_server import ingest_folder, running_api

KB = "handbook"
PDF = "layout-parser-paper-fast.pdf"  # its parser records pages 1 and 2


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, corpora_dir: Path) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("search-filters")
    folder = write_policy_documents(root / "documents")  # returns-policy.md: "Returns policy", "Exceptions"
    shutil.copy(corpora_dir / "docs" / PDF, folder / PDF)
    settings = load_settings(home=root / "ods-home")
    ingest_folder(settings, KB, folder)
    with running_api(settings) as api, httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


def search(client: httpx.Client, **body: object) -> list[dict[str, object]]:
    response = client.post(f"/api/v1/knowledge-bases/{KB}/search", json={"top_k": 100, **body})
    assert response.status_code == 200, response.text
    return response.json()["data"]["hits"]  # type: ignore[no-any-return]


def test_headings_and_pages_return_only_matching_chunks(client: httpx.Client) -> None:
    everything = search(client, query="returns and layout detection", mode="bm25")
    exceptions = search(client, query="returned", mode="dense", headings=["Exceptions"])
    either = search(client, query="returns", mode="hybrid", headings=["Exceptions", "Returns policy"])
    page_two = search(client, query="layout detection", mode="dense", pages=[2])
    pages = search(client, query="layout detection", mode="hybrid", pages=[1, 2], documents=[PDF])
    none = search(client, query="returned", mode="bm25", headings=["Exceptions"], pages=[1])

    assert {hit["page"] for hit in everything} >= {None, 1, 2}, everything
    found = {(str(hit["doc_uri"]).rsplit("/", 1)[-1], hit["heading"]) for hit in exceptions}
    assert found == {("returns-policy.md", "Exceptions")}, exceptions
    assert {hit["heading"] for hit in either} == {"Exceptions", "Returns policy"}, either
    assert page_two and {hit["page"] for hit in page_two} == {2}, page_two
    assert {hit["page"] for hit in pages} == {1, 2}, pages
    assert none == []  # headings and pages hold together: a Markdown heading is on no page


def test_bad_headings_and_pages_are_40001_naming_the_field(client: httpx.Client) -> None:
    cases = {
        "body.pages.0": {"pages": [0]},
        "body.pages": {"pages": list(range(1, 202))},
        "body.headings": {"headings": ["é" * 1025]},
        "body.headings.0": {"headings": [7]},
    }
    for field, limits in cases.items():
        response = client.post(f"/api/v1/knowledge-bases/{KB}/search", json={"query": "x", **limits})
        body = response.json()
        assert response.status_code == 400, response.text
        assert body["code"] == 40001 and body["details"]["field"] == field, body
        assert "Traceback" not in response.text
