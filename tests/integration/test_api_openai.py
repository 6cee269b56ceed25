"""The OpenAI-compatible routes of `ods serve`, driven by the official ``openai`` client as an application
would: models, chat over a knowledge base and datasets (stream and not), embeddings, and OpenAI-shaped
errors.

One real server per module; answers quote their evidence (extractive); the SQL over the sales dataset is
written by the packaged model, so its tests check the shape of the ``sql`` field, never the SQL text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from ods.adapters.models.llm import cached_causal_lms
from ods.factories import build_embedder, open_catalog
from ods.settings import load_settings
from tests.support.api_server import DATASET, KB, RunningApi, running_api, served_platform
from tests.support.tiny_llm import tiny_model_dir

QUESTION = "How long do customers have to return a product?"
SQL_QUESTION = "What is the total revenue per region?"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with served_platform(tmp_path_factory.mktemp("api-openai")) as running:
        yield running


@pytest.fixture
def client(api: RunningApi) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_list_knowledge_bases_and_the_configured_models(client: openai.OpenAI) -> None:
    models = {model.id: model.owned_by for model in client.models.list()}
    assert models == {
        f"kb:{KB}": "ods-knowledge-base",
        f"sql:{DATASET}": "ods-dataset",
        "SmolLM2-135M-Instruct": "ods-llm",
        "all-MiniLM-L6-v2": "ods-embedding",
    }


def test_chat_answers_with_citations_and_keeps_the_conversation(
    api: RunningApi, client: openai.OpenAI
) -> None:
    completion = client.chat.completions.create(
        model=f"kb:{KB}", messages=[{"role": "user", "content": QUESTION}]
    )

    answer = completion.choices[0].message.content or ""
    assert completion.object == "chat.completion" and completion.model == f"kb:{KB}"
    assert "within 30 days" in answer and "[1]" in answer
    assert completion.choices[0].finish_reason == "stop"
    extra: dict[str, Any] = completion.model_extra or {}
    sources = extra["sources"]
    assert sources[0]["marker"] == 1 and sources[0]["doc_uri"].endswith("returns-policy.md")
    assert sources[0]["kind"] == "document"

    follow_up = client.chat.completions.create(
        model=f"kb:{KB}",
        messages=[{"role": "user", "content": "Which warehouse ships the orders?"}],
        extra_body={"conversation_id": extra["conversation_id"]},
    )
    assert "Leeds" in (follow_up.choices[0].message.content or "")
    assert (follow_up.model_extra or {})["conversation_id"] == extra["conversation_id"]
    with open_catalog(api.settings) as catalog:
        kept = catalog.get_conversation(extra["conversation_id"])
    assert [message.role for message in kept.messages] == ["user", "assistant", "user", "assistant"]
    assert kept.messages[0].content == QUESTION


def test_chat_streams_as_openai_does(api: RunningApi, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=f"kb:{KB}", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "within 30 days" in text and "[1]" in text
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert (last.model_extra or {})["sources"][0]["doc_uri"].endswith("returns-policy.md")

    with httpx.stream(
        "POST",
        f"{api.base_url}/v1/chat/completions",
        json={"model": f"kb:{KB}", "messages": [{"role": "user", "content": QUESTION}], "stream": True},
        timeout=120,
    ) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = [line for line in raw.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "stop"


def test_a_client_that_leaves_mid_stream_does_not_disturb_the_server(
    api: RunningApi, client: openai.OpenAI
) -> None:
    request = {"model": f"kb:{KB}", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with httpx.stream("POST", f"{api.base_url}/v1/chat/completions", json=request, timeout=120) as raw:
        first = next(raw.iter_lines())
    assert first.startswith("data: ")  # then the connection is closed with the answer still coming

    after = client.chat.completions.create(model=f"kb:{KB}", messages=[{"role": "user", "content": QUESTION}])
    assert "within 30 days" in (after.choices[0].message.content or "")


def test_chat_errors_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown_kb:
        client.chat.completions.create(model="kb:nope", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.BadRequestError) as hostile:
        client.chat.completions.create(model="kb:../etc", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.BadRequestError) as no_messages:
        client.chat.completions.create(model=f"kb:{KB}", messages=[])

    assert "no knowledge base named 'nope'" in unknown_kb.value.message
    assert unknown_model.value.code == "model_not_found" and "'gpt-4o'" in unknown_model.value.message
    assert "knowledge base name '../etc' is not allowed" in hostile.value.message
    assert no_messages.value.param == "body.messages"
    for error in (unknown_kb, unknown_model, hostile, no_messages):
        assert error.value.response.headers["x-request-id"]
        assert set(error.value.response.json()) == {"error"}


def assert_sql_shape(sql: dict[str, Any] | None) -> None:
    """The ``sql`` extension: the SQL and its result table, or why none ran (the model's SQL varies)."""
    assert sql is not None
    assert set(sql) == {"datasets", "query", "columns", "rows", "truncated", "error"}
    assert sql["datasets"] == [DATASET]
    assert sql["error"] is not None or (sql["query"] and sql["columns"]), sql
    assert all(len(row) == len(sql["columns"]) for row in sql["rows"])


def test_chat_over_a_knowledge_base_and_a_dataset_returns_the_sql(client: openai.OpenAI) -> None:
    """kb:<name>+sql:<dataset>: documents and SQL in one answer; kb:<name> alone runs no SQL."""
    both = client.chat.completions.create(
        model=f"kb:{KB}+sql:{DATASET}", messages=[{"role": "user", "content": SQL_QUESTION}]
    )
    documents_only = client.chat.completions.create(
        model=f"kb:{KB}", messages=[{"role": "user", "content": QUESTION}]
    )

    assert both.model == f"kb:{KB}+sql:{DATASET}" and both.choices[0].message.content
    extra: dict[str, Any] = both.model_extra or {}
    assert_sql_shape(extra["sql"])
    assert extra["conversation_id"] and extra["sources"] is not None
    assert (documents_only.model_extra or {})["sql"] is None


def test_chat_over_datasets_only_streams_the_sql_on_the_last_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=f"sql:{DATASET}",
            messages=[{"role": "user", "content": SQL_QUESTION}],
            stream=True,
            extra_body={"datasets": [DATASET]},  # the extension field, merged with the id's datasets
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks).strip()
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert_sql_shape((last.model_extra or {})["sql"])
    assert all(chunk.model == f"sql:{DATASET}" for chunk in chunks)


def test_dataset_models_refuse_bad_and_unknown_names(client: openai.OpenAI) -> None:
    def ask(model: str, **extra_body: Any) -> None:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": SQL_QUESTION}], extra_body=extra_body or None
        )

    with pytest.raises(openai.BadRequestError) as bad_dataset:
        ask(f"kb:{KB}+sql:{DATASET},Bad;drop")
    with pytest.raises(openai.BadRequestError) as bad_kb:
        ask(f"kb:Nope+sql:{DATASET}")
    with pytest.raises(openai.BadRequestError) as empty:
        ask("sql:")
    with pytest.raises(openai.BadRequestError) as bad_field:
        ask(f"kb:{KB}", datasets=["../etc"])
    with pytest.raises(openai.BadRequestError) as field_on_llm:
        ask("SmolLM2-135M-Instruct", datasets=[DATASET])
    with pytest.raises(openai.NotFoundError) as unknown_dataset:
        ask("sql:nope")
    with pytest.raises(openai.NotFoundError) as unknown_version:
        ask(f"kb:{KB}+sql:{DATASET}@99")
    with pytest.raises(openai.NotFoundError) as unknown_kb:
        ask(f"kb:nope+sql:{DATASET}")
    with pytest.raises(openai.NotFoundError) as unknown_field:
        ask(f"kb:{KB}", datasets=["nope"])
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model=f"sql:{DATASET}", prompt=SQL_QUESTION)

    assert "dataset name 'Bad;drop' is not allowed" in bad_dataset.value.message
    assert "knowledge base name 'Nope' is not allowed" in bad_kb.value.message
    assert "names an empty dataset" in empty.value.message
    assert "dataset name '../etc' is not allowed" in bad_field.value.message
    assert "datasets is only for kb:<name> or sql:<dataset>" in field_on_llm.value.message
    assert "'nope'" in unknown_dataset.value.message and unknown_dataset.value.code == "not_found"
    assert f"{DATASET!r} has no version 99" in unknown_version.value.message
    assert "no knowledge base named 'nope'" in unknown_kb.value.message
    assert "'nope'" in unknown_field.value.message
    assert "answers chats only" in completion.value.message
    for error in (bad_dataset, bad_kb, empty, bad_field, field_on_llm, unknown_dataset, unknown_version):
        assert set(error.value.response.json()) == {"error"}


def test_embeddings_match_the_packaged_embedder(api: RunningApi, client: openai.OpenAI) -> None:
    texts = ["returns within 30 days", "the Leeds warehouse", "a two year warranty"]
    default = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # base64 on the wire
    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")

    expected = build_embedder(api.settings.embedding).embed(texts)
    got = np.array([item.embedding for item in default.data], dtype=np.float32)
    assert [item.index for item in default.data] == [0, 1, 2] and got.shape == (3, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(floats.data[0].embedding, expected[0], atol=1e-5)
    assert default.usage.prompt_tokens == default.usage.total_tokens > 0

    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="non-blank"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["fine", " "])
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=256)


def test_chat_with_the_configured_llm_streams_and_counts_tokens(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server whose LLM is a local model folder (the tiny random-weight model: gibberish, but real
    tokenizer, generation and streaming) chats with it under the folder's name."""
    model_dir = tiny_model_dir(tmp_path_factory)
    settings = load_settings(
        home=tmp_path_factory.mktemp("api-llm") / "ods-home", llm={"model": str(model_dir)}
    )
    with running_api(settings) as served:
        served.resources.preload()  # what `ods serve --preload` does before serving
        preloaded = cached_causal_lms()
        client = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
        listed = [model.id for model in client.models.list() if model.owned_by == "ods-llm"]
        whole = client.chat.completions.create(
            model=model_dir.name, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6
        )
        chunks = list(
            client.chat.completions.create(
                model=model_dir.name,
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Say hello."},
                ],
                max_completion_tokens=6,
                stream=True,
            )
        )
        metrics = httpx.get(f"{served.base_url}/metrics").text

    assert (str(model_dir.resolve()), None) in preloaded
    assert listed == [model_dir.name]
    assert whole.choices[0].message.content and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 6 and whole.usage.prompt_tokens > 0
    assert (whole.model_extra or {})["sources"] == []
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert streamed and len(chunks) >= 3 and chunks[-1].choices[0].finish_reason == "length"
    assert f'ods_api_tokens_total{{kind="completion",model="{model_dir.name}"}} 12.0' in metrics
