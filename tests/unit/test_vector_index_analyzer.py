"""The analyzer of a collection's text field (``ods.adapters.milvus.index``): a recording client, no server.

A Milvus server is not available to the tests; these pin what a server is asked (``analyzer_params``) and
how an existing collection's analyzer is read back. Milvus Lite itself is tested in
tests/integration/test_sparse_snapshot_lite.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymilvus import MilvusClient

from ods.adapters.milvus.client import VectorIndexError
from ods.adapters.milvus.index import MilvusVectorIndex
from ods.adapters.milvus.schema import MODEL_ID_PROPERTY, collection_analyzer


class _RecordingClient:
    """Creates nothing: keeps the schema a new collection is created with, describes what it was given."""

    create_schema = staticmethod(MilvusClient.create_schema)
    prepare_index_params = staticmethod(MilvusClient.prepare_index_params)

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.existing = existing
        self.schema: Any = None

    def has_collection(self, name: str, timeout: float) -> bool:
        return self.existing is not None

    def create_collection(self, name: str, *, schema: Any, **_: Any) -> None:
        self.schema = schema

    def describe_collection(self, name: str, timeout: float) -> dict[str, Any]:
        assert self.existing is not None
        return self.existing

    def load_collection(self, name: str, timeout: float) -> None:
        pass


def text_params(client: _RecordingClient) -> dict[str, Any]:
    [text] = [field for field in client.schema.to_dict()["fields"] if field["name"] == "text"]
    return dict(text.get("params", {}))


@pytest.mark.parametrize("analyzer", ["english", "standard"])
def test_a_new_collection_on_a_server_gets_the_named_analyzer(analyzer: str) -> None:
    client = _RecordingClient()
    index = MilvusVectorIndex(client, "c", 4, "model", uri="http://milvus:19530", analyzer=analyzer)  # type: ignore[arg-type]
    index.ensure_collection()
    assert json.loads(text_params(client)["analyzer_params"]) == {"type": analyzer}  # pymilvus sends JSON
    assert text_params(client)["enable_analyzer"] is True


def test_a_milvus_lite_collection_keeps_its_standard_analyzer() -> None:
    client = _RecordingClient()
    MilvusVectorIndex(client, "c", 4, "model", lite_file="/tmp/x/milvus.db").ensure_collection()  # type: ignore[arg-type]
    assert "analyzer_params" not in text_params(client)


def described(text_params: dict[str, Any]) -> dict[str, Any]:
    return {
        "properties": {MODEL_ID_PROPERTY: "model"},
        "fields": [
            {"name": "text", "params": {"max_length": 65535, "enable_analyzer": "true", **text_params}},
            {"name": "dense", "params": {"dim": 4}},
        ],
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "standard"),  # created before analyzers were chosen: Milvus's default
        ({"analyzer_params": '{"type": "english"}'}, "english"),  # servers describe it as JSON text
        ({"analyzer_params": {"type": "standard"}}, "standard"),
        ({"analyzer_params": {"tokenizer": "standard", "filter": ["lowercase"]}}, "custom"),
    ],
)
def test_an_existing_collection_reports_its_own_analyzer(params: dict[str, Any], expected: str) -> None:
    assert collection_analyzer(described(params)) == expected
    client = _RecordingClient(existing=described(params))
    index = MilvusVectorIndex(client, "c", 4, "model", uri="http://milvus:19530", analyzer="english")  # type: ignore[arg-type]
    assert index.analyzer == expected


def test_an_unknown_analyzer_is_refused() -> None:
    with pytest.raises(VectorIndexError, match="unknown analyzer 'french'; known: english, standard"):
        MilvusVectorIndex(_RecordingClient(), "c", 4, "model", analyzer="french")  # type: ignore[arg-type]


class _LiteServerClient(_RecordingClient):
    """Answers like a standalone Milvus Lite server: a named analyzer other than its own is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def create_collection(self, name: str, *, schema: Any, **options: Any) -> None:
        self.attempts += 1
        params = {field["name"]: field.get("params", {}) for field in schema.to_dict()["fields"]}
        if "analyzer_params" in params["text"]:
            raise RuntimeError("unknown tokenizer type: 'english' (supported: 'standard', 'jieba')")
        super().create_collection(name, schema=schema, **options)


def test_a_server_without_the_analyzer_gets_a_standard_collection_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _LiteServerClient()
    index = MilvusVectorIndex(client, "c", 4, "model", uri="http://127.0.0.1:19530")  # type: ignore[arg-type]
    index.ensure_collection()
    assert client.attempts == 2
    assert "analyzer_params" not in text_params(client)
    assert "uses its standard analyzer" in caplog.text
