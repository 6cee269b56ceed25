"""`POST /api/v1/ask` and the conversations routes of `ods serve`: an answer as JSON and as server-sent
events (text deltas, then sources with the SQL and its table, then done), kept in a conversation that is
listed, shown with its citations and SQL, and deleted.

One real server per module over the sample platform (the policies knowledge base and the sales dataset);
answers quote their evidence, and the SQL is written by the tiny random-weight model (so it is refused or
fails, and the stream carries that reason in place of a table: the packaged SmolLM2 took ~40 s here to
write SQL that failed as well).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api_envelope import data
from tests.support.api_server import DATASET, KB, RunningApi, served_platform
from tests.support.tiny_llm import tiny_model_dir

QUESTION = "How long do customers have to return a product?"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    model = tiny_model_dir(tmp_path_factory)
    with served_platform(tmp_path_factory.mktemp("api-ask"), llm={"model": str(model)}) as running:
        yield running


@pytest.fixture(scope="module")
def client(api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=300) as session:
        yield session


def events(client: httpx.Client, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of a streamed answer, in order, read as they arrive."""
    received: list[tuple[str, dict[str, Any]]] = []
    with client.stream("POST", "/api/v1/ask", json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert name is not None
                received.append((name, json.loads(line.removeprefix("data: "))))
                name = None
    return received


def test_ask_answers_with_citations_and_keeps_the_conversation(client: httpx.Client) -> None:
    first = data(client.post("/api/v1/ask", json={"question": QUESTION, "kb": KB}))
    follow_up = data(
        client.post(
            "/api/v1/ask",
            json={
                "question": "Which warehouse ships orders?",
                "kb": KB,
                "conversation_id": first["conversation_id"],
            },
        )
    )

    assert "within 30 days" in first["answer"] and "[1]" in first["answer"]
    assert first["route"] == "rag" and first["model"] is None and first["sql"] is None
    assert first["citations"][0]["doc_uri"].endswith("returns-policy.md") and first["citations"][0]["excerpt"]
    assert first["timings"]["total"] > 0 and first["question"] == QUESTION
    assert follow_up["conversation_id"] == first["conversation_id"]

    listed = data(client.get("/api/v1/conversations"))
    shown = data(client.get(f"/api/v1/conversations/{first['conversation_id']}"))

    assert listed[0]["id"] == first["conversation_id"] and listed[0]["title"] == QUESTION
    assert [message["role"] for message in shown["messages"]] == ["user", "assistant", "user", "assistant"]
    assert shown["messages"][1]["content"] == first["answer"]
    cited = shown["messages"][1]["citations"][0]
    assert cited["marker"] == 1 and cited["doc_uri"].endswith("returns-policy.md") and cited["chunk_id"]


def test_ask_streams_text_then_sources_with_sql_then_done(client: httpx.Client) -> None:
    received = events(
        client,
        {
            "question": "What is the total revenue per region?",
            "kb": KB,
            "datasets": [DATASET],
            "mode": "both",
        },
    )

    names = [name for name, _ in received]
    assert names[-2:] == ["sources", "done"] and set(names[:-2]) == {"delta"}, names
    text = "".join(payload["text"] for name, payload in received if name == "delta")
    sources, done = received[-2][1], received[-1][1]
    assert text.strip() and done["route"] == "both" and done["conversation_id"]
    sql = sources["sql"]
    assert sql is not None and sql["datasets"] == [DATASET]
    assert sql["error"] is not None or (sql["sql"] and sql["columns"]), sql
    shown = data(client.get(f"/api/v1/conversations/{done['conversation_id']}"))
    assert shown["messages"][1]["content"] == text
    assert shown["messages"][1]["sql"] == sql["sql"]


def test_ask_refuses_unknown_and_bad_input(client: httpx.Client) -> None:
    unknown_kb = client.post("/api/v1/ask", json={"question": QUESTION, "kb": "nope", "stream": True})
    unknown_conversation = client.post(
        "/api/v1/ask", json={"question": QUESTION, "kb": KB, "conversation_id": "f" * 32}
    )
    bad_kb = client.post("/api/v1/ask", json={"question": QUESTION, "kb": "../etc"})
    blank = client.post("/api/v1/ask", json={"question": "   ", "kb": KB})
    nothing = client.post("/api/v1/ask", json={"question": QUESTION})

    assert unknown_kb.status_code == 404 and unknown_kb.json()["code"] == 40401
    assert unknown_conversation.status_code == 404 and unknown_conversation.json()["code"] == 40401
    assert bad_kb.status_code == 400 and bad_kb.json()["details"]["field"] == "body.kb"
    assert blank.status_code == 400 and "the question is empty" in blank.json()["message"]
    assert nothing.status_code == 400 and "nothing to answer from" in nothing.json()["message"]


def test_a_conversation_is_deleted(client: httpx.Client) -> None:
    asked = data(client.post("/api/v1/ask", json={"question": "How long is the warranty?", "kb": KB}))
    conversation = asked["conversation_id"]

    deleted = data(client.delete(f"/api/v1/conversations/{conversation}"))
    shown = client.get(f"/api/v1/conversations/{conversation}")
    again = client.delete(f"/api/v1/conversations/{conversation}")
    hostile = client.get("/api/v1/conversations/..%2Fetc")

    assert deleted == {"id": conversation, "deleted": True}
    assert shown.status_code == 404 and shown.json()["code"] == 40401
    assert again.status_code == 404
    assert conversation not in [item["id"] for item in data(client.get("/api/v1/conversations"))]
    assert hostile.status_code in (400, 404) and hostile.json()["code"] in (40001, 40401)
