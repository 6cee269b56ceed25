"""The routes the console's controls call: a conversation renamed, a knowledge base re-synced with its
source, and a knowledge base's lineage (document → chunk → the conversations that cited it); each one
answers another tenant's resource as missing.

One real server per module over the sample platform (the policies knowledge base, ingested from a folder);
answers quote their evidence, so their citations need no model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ods.factories import open_catalog
from ods.stages.api_keys import create_api_key
from tests.support.api_envelope import data, refused
from tests.support.api_server import KB, RunningApi, served_platform

QUESTION = "How long do customers have to return a product?"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with served_platform(tmp_path_factory.mktemp("api-console-routes")) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=120) as session:
        yield session


@pytest.fixture(scope="module")
def asked(client: httpx.Client) -> dict[str, Any]:
    answer: dict[str, Any] = data(client.post("/api/v1/ask", json={"question": QUESTION, "kb": KB}))
    assert answer["citations"], answer
    return answer


def finished_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    while True:  # pytest-timeout stops a run that never ends
        run: dict[str, Any] = data(client.get(f"/api/v1/runs/{run_id}"))
        if run["state"] in ("completed", "failed", "interrupted"):
            return run
        time.sleep(0.2)


def test_a_conversation_is_renamed_and_the_same_title_again_changes_nothing(
    client: httpx.Client, asked: dict[str, Any]
) -> None:
    url = f"/api/v1/conversations/{asked['conversation_id']}"
    renamed = data(client.patch(url, json={"title": "  Returns   policy\n"}))
    again = data(client.patch(url, json={"title": "Returns policy"}))
    shown = data(client.get(url))

    assert renamed["title"] == "Returns policy" and shown["title"] == "Returns policy"
    assert again == renamed  # nothing written: not even the activity time moved
    assert len(shown["messages"]) == 2  # the messages stay
    listed = data(client.get("/api/v1/conversations"))
    assert [item["title"] for item in listed if item["id"] == asked["conversation_id"]] == ["Returns policy"]


def test_a_rename_refuses_a_blank_or_long_title_and_an_unknown_conversation(
    client: httpx.Client, asked: dict[str, Any]
) -> None:
    url = f"/api/v1/conversations/{asked['conversation_id']}"
    blank = refused(client.patch(url, json={"title": " \t "}), 400, 40001)
    control = refused(client.patch(url, json={"title": "a\x1bb"}), 400, 40001)
    long = refused(client.patch(url, json={"title": "x" * 201}), 400, 40001)
    missing = refused(client.patch("/api/v1/conversations/" + "f" * 32, json={"title": "t"}), 404, 40401)
    no_body = client.patch(url)

    assert "title" in blank["message"] and "printable" in blank["message"]
    assert "control characters" in control["message"]
    assert long["details"]["field"] == "body.title"
    assert "f" * 32 in missing["message"]
    assert no_body.status_code == 400 and "Traceback" not in no_body.text
    assert data(client.get(url))["title"] in ("Returns policy", QUESTION)  # unchanged by the refusals


def test_a_re_sync_runs_an_ingest_that_finds_nothing_changed(client: httpx.Client) -> None:
    started = data(client.post(f"/api/v1/knowledge-bases/{KB}/sync"), status=202)
    run = finished_run(client, started["id"])
    again = finished_run(client, data(client.post(f"/api/v1/knowledge-bases/{KB}/sync"), status=202)["id"])

    assert started["kind"] == "ingest" and started["knowledge_base"] == KB
    assert run["state"] == "completed", run
    assert run["result"]["indexed"] == 0 and run["result"]["unchanged"] >= 1
    assert again["result"]["unchanged"] == run["result"]["unchanged"]  # idempotent
    assert data(client.get(f"/api/v1/knowledge-bases/{KB}"))["documents"]["indexed"] >= 1
    refused(client.post("/api/v1/knowledge-bases/nope/sync"), 404, 40401)
    refused(client.post("/api/v1/knowledge-bases/Bad%20Name/sync"), 400, 40001)


def test_the_lineage_links_documents_chunks_and_the_conversations_citing_them(
    client: httpx.Client, asked: dict[str, Any]
) -> None:
    lineage = data(client.get(f"/api/v1/knowledge-bases/{KB}/lineage"))
    documents = {item["id"]: item for item in lineage["documents"]}
    cited = [item for item in lineage["citations"] if item["conversation_id"] == asked["conversation_id"]]

    assert lineage["knowledge_base"] == KB and documents
    assert cited and {item["marker"] for item in cited} == {c["marker"] for c in asked["citations"]}
    for item in cited:
        assert item["document_id"] in documents
        assert item["document_uri"] == documents[item["document_id"]]["uri"]
        assert item["chunk_id"] and item["chunk_index"] is not None
    refused(client.get("/api/v1/knowledge-bases/nope/lineage"), 404, 40401)


def test_a_stored_citation_names_its_knowledge_base_and_its_passage_is_read_again(
    client: httpx.Client, asked: dict[str, Any]
) -> None:
    shown = data(client.get(f"/api/v1/conversations/{asked['conversation_id']}"))
    [answer] = [message for message in shown["messages"] if message["role"] == "assistant"]
    citation = answer["citations"][0]
    passage = data(client.get(f"/api/v1/knowledge-bases/{KB}/chunks/{citation['chunk_id']}"))
    live = next(c for c in asked["citations"] if c["marker"] == citation["marker"])

    assert citation["knowledge_base"] == KB
    assert passage["chunk_id"] == citation["chunk_id"] and passage["doc_uri"] == citation["doc_uri"]
    assert passage["text"] and live["excerpt"].strip(" .…")[:40] in passage["text"]
    missing = refused(client.get(f"/api/v1/knowledge-bases/{KB}/chunks/{'0' * 32}"), 404, 40401)
    assert "holds no chunk" in missing["message"]
    assert client.get(f"/api/v1/knowledge-bases/{KB}/chunks/not-hex").status_code in (400, 404)


def test_another_tenant_meets_none_of_it(api: RunningApi, asked: dict[str, Any]) -> None:
    """Last in the module: once keys exist, every caller needs one."""
    with open_catalog(api.settings) as catalog:
        other = create_api_key(catalog, "acme-admin", roles=["super_admin"], tenant="acme").key
    conversation = f"/api/v1/conversations/{asked['conversation_id']}"
    with httpx.Client(
        base_url=api.base_url, timeout=60, headers={"Authorization": f"Bearer {other}"}
    ) as client:
        refused(client.patch(conversation, json={"title": "mine now"}), 404, 40401)
        refused(client.post(f"/api/v1/knowledge-bases/{KB}/sync"), 404, 40401)
        refused(client.get(f"/api/v1/knowledge-bases/{KB}/lineage"), 404, 40401)
        chunk = asked["citations"][0]["chunk_id"]
        refused(client.get(f"/api/v1/knowledge-bases/{KB}/chunks/{chunk}"), 404, 40401)
        assert data(client.get("/api/v1/conversations")) == []
