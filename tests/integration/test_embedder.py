"""Embedders: the real packaged all-MiniLM-L6-v2 in-process, and the OpenAI-compatible client."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from ods.adapters.models import embedder as embedder_module
from ods.adapters.models.embedder import (
    EmbeddingError,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    cached_model_dirs,
    load_sentence_transformer,
)
from ods.adapters.models.packaged import embedding_model_dir
from ods.factories import build_embedder
from ods.settings import EmbeddingSettings

TEXTS = [
    "A cat.",
    "The mitochondria is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "Paris is the capital of France.",
    "Short",
    "Milvus stores dense and sparse vectors side by side so that hybrid search can fuse both rankings.",
]


def test_packaged_model_gives_normalised_384_dim_vectors_in_input_order() -> None:
    embedder = SentenceTransformerEmbedder(batch_size=2)

    vectors = embedder.embed(TEXTS)
    one_by_one = np.vstack([embedder.embed([text]) for text in TEXTS])

    assert embedder.model_id == "all-MiniLM-L6-v2"
    assert embedder.dimension == 384
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Length sorting inside the call must not reorder rows: each row equals that text embedded alone.
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_same_text_gives_the_same_vector_and_related_texts_are_closer() -> None:
    embedder = SentenceTransformerEmbedder()

    first, second, related, unrelated = embedder.embed(
        ["How do cats sleep?", "How do cats sleep?", "Sleeping habits of cats", "Quarterly tax filing rules"]
    )

    np.testing.assert_array_equal(first, second)
    assert float(first @ related) > float(first @ unrelated) + 0.2


def test_model_is_loaded_once_per_process_and_shared() -> None:
    first = SentenceTransformerEmbedder()
    second = build_embedder(EmbeddingSettings(batch_size=8))
    assert isinstance(second, SentenceTransformerEmbedder)

    first.embed(["warm up"])
    second.embed(["again"])

    assert first.model is second.model
    key = str(embedding_model_dir().resolve())
    assert cached_model_dirs().count(key) == 1
    assert load_sentence_transformer(embedding_model_dir()) is first.model


def test_count_tokens_uses_the_model_tokenizer_without_special_tokens() -> None:
    embedder = SentenceTransformerEmbedder()

    counts = embedder.count_tokens(["hello world", "", "electroencephalography"])

    assert counts[:2] == [2, 0]
    assert counts[2] == len(embedder.model.tokenizer.tokenize("electroencephalography")) > 1
    assert embedder.max_tokens == 256


def test_count_tokens_matches_the_tokenizer_on_awkward_text() -> None:
    # Counts come from per-word counts; whitespace the tokenizer deletes rather than splits at (vertical
    # tab, form feed, file separators, NEL) must not make them differ from tokenizing the whole text.
    embedder = SentenceTransformerEmbedder()
    texts = [
        "naïve café ÅNGSTRÖM Straße 東京タワー 🎉 p.s. U.S.A. e-mail foo@bar.com http://x.y/z?q=1",
        "play\x0bing play\x0cing play\x1cing play\x85ing tab\there\r\nline\u2028x\u3000y\xa0z",
        "x" * 150 + " short words " + "y" * 99,
        "a\x00b c\u200bd",
        "",
        *[f"the {word} of the ledger, checked again" for word in ("payment", "invoice", "payment")],
    ]
    tokenizer = embedder.model.tokenizer

    expected = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    assert embedder.count_tokens(texts) == expected
    assert embedder.count_tokens(texts) == expected  # again, from cached word counts


def test_forward_passes_group_texts_of_similar_length_within_a_token_budget() -> None:
    embedder = SentenceTransformerEmbedder(batch_size=64)
    texts = ["short text"] * 100 + ["a much longer text " * 40] * 20

    batches = embedder._forward_batches(texts)
    vectors = embedder.embed(texts)

    assert sorted(position for batch in batches for position in batch) == list(range(120))
    assert all(len(batch) <= 64 for batch in batches)
    assert set(batches[0]) <= set(range(100, 120))  # longest first
    lengths = {len(batch) for batch in batches if batch[0] >= 100}
    assert max(lengths) * 162 <= embedder_module.CPU_BATCH_TOKENS
    np.testing.assert_allclose(vectors[[0, 100]], embedder.embed([texts[0], texts[100]]), atol=1e-5)


def test_unknown_local_model_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match="neither the packaged"):
        build_embedder(EmbeddingSettings(model="no-such-model"))


def _fake_server(dimension: int, seen: list[dict[str, object]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({"url": str(request.url), "auth": request.headers.get("authorization"), **body})
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": [float(len(text)) + 1.0] + [0.0] * (dimension - 1),
            }
            for index, text in enumerate(body["input"])
        ]
        return httpx.Response(
            200, json={"object": "list", "data": list(reversed(data)), "model": body["model"]}
        )

    return httpx.MockTransport(handle)


def test_openai_embedder_batches_orders_and_normalises() -> None:
    seen: list[dict[str, object]] = []
    embedder = OpenAIEmbedder(
        "http://embed.test/v1/", "bge-small", api_key="k", batch_size=2, transport=_fake_server(8, seen)
    )

    vectors = embedder.embed(["a", "bb", "ccc"])

    assert vectors.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert [call["input"] for call in seen] == [["a", "bb"], ["ccc"]]
    assert {call["url"] for call in seen} == {"http://embed.test/v1/embeddings"}
    assert {call["auth"] for call in seen} == {"Bearer k"}
    assert embedder.dimension == 8
    assert embedder.count_tokens(["one two three."]) == [6]


def test_openai_embedder_errors_name_the_endpoint() -> None:
    failing = OpenAIEmbedder(
        "http://embed.test/v1",
        "m",
        transport=httpx.MockTransport(lambda request: httpx.Response(503, text="overloaded")),
    )
    with pytest.raises(
        EmbeddingError, match=r"http://embed.test/v1/embeddings answered HTTP 503 .*overloaded"
    ):
        failing.embed(["x"])

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    unreachable = OpenAIEmbedder("http://embed.test/v1", "m", transport=httpx.MockTransport(refuse))
    with pytest.raises(EmbeddingError, match=r"http://embed.test/v1/embeddings did not answer"):
        unreachable.embed(["x"])
