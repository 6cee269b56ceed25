"""Questions embedded by ONNX Runtime over the packaged model's export: torch's vectors, a cached graph,
a clear fallback to torch, and the cache of recent questions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ods.adapters.models.embedder import SentenceTransformerEmbedder
from ods.adapters.models.onnx_encoder import OnnxSentenceEncoder, OnnxUnavailableError, check_exportable
from ods.adapters.models.packaged import embedding_model_dir

QUESTIONS = [
    "What problems and concerns are there in making up descriptive titles?",
    "returns policy",
    "information " * 400,  # past the model's 256 tokens: truncated where torch truncates
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(query_runtime="torch")


def test_onnx_questions_match_torch_and_the_export_is_kept(
    onnx_cache: Path, torch_embedder: SentenceTransformerEmbedder
) -> None:
    embedder = SentenceTransformerEmbedder(query_runtime="onnx", onnx_cache_dir=onnx_cache)

    for question in QUESTIONS:
        assert np.abs(embedder.embed([question]) - torch_embedder.embed([question])).max() < 1e-5
    # Several texts of different lengths in one call: padded, and each still matches.
    assert np.abs(embedder.embed(QUESTIONS) - torch_embedder.embed(QUESTIONS)).max() < 1e-5
    assert embedder.query_runtime == "onnx"
    assert len(list(onnx_cache.glob("*.onnx"))) == 1
    assert len(list(onnx_cache.glob("*.checked"))) == 1

    # Another embedder (another process alike) reuses the export without loading the torch model.
    again = SentenceTransformerEmbedder(query_runtime="onnx", onnx_cache_dir=onnx_cache)
    vector = again.embed([QUESTIONS[0]])
    assert again._model is None
    assert np.abs(vector - torch_embedder.embed([QUESTIONS[0]])).max() < 1e-5


def test_an_unusable_cache_falls_back_to_torch_with_one_warning(
    tmp_path: Path, torch_embedder: SentenceTransformerEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("in the way", encoding="utf-8")
    embedder = SentenceTransformerEmbedder(query_runtime="onnx", onnx_cache_dir=not_a_folder / "onnx")

    with caplog.at_level(logging.WARNING, logger="ods.adapters.models.embedder"):
        first = embedder.embed([QUESTIONS[0]])
        embedder.embed([QUESTIONS[1]])

    assert embedder.query_runtime == "torch"
    assert np.array_equal(first, torch_embedder.embed([QUESTIONS[0]]))
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "questions are embedded with torch" in warnings[0]


def test_only_mean_pooling_models_are_exported(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    pooling = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")

    with pytest.raises(OnnxUnavailableError, match="not Transformer \\+ mean pooling"):
        check_exportable(tmp_path)
    with pytest.raises(OnnxUnavailableError, match="no readable sentence-transformers modules"):
        check_exportable(tmp_path / "missing")


def test_recent_questions_are_answered_from_the_cache(torch_embedder: SentenceTransformerEmbedder) -> None:
    embedder = SentenceTransformerEmbedder(query_runtime="torch", query_cache=2)

    first = embedder.embed([QUESTIONS[0]])
    first[0, 0] = 42.0  # the caller's copy: the cached vector must not change
    again = embedder.embed([QUESTIONS[0]])
    embedder.embed([QUESTIONS[1]])
    embedder.embed(["a third question pushes out the oldest"])

    assert np.array_equal(again, torch_embedder.embed([QUESTIONS[0]]))
    assert list(embedder._recent) == [QUESTIONS[1], "a third question pushes out the oldest"]
    with pytest.raises(ValueError, match="query_cache must be 0 or more"):
        SentenceTransformerEmbedder(query_cache=-1)


def test_a_corrupt_cached_graph_falls_back_to_torch_naming_the_file(
    tmp_path: Path, torch_embedder: SentenceTransformerEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    graph = OnnxSentenceEncoder(embedding_model_dir(), tmp_path, lambda: torch_embedder.model).graph_path
    graph.write_bytes(b"not an ONNX graph")
    embedder = SentenceTransformerEmbedder(query_runtime="onnx", onnx_cache_dir=tmp_path)

    with caplog.at_level(logging.WARNING, logger="ods.adapters.models.embedder"):
        vector = embedder.embed([QUESTIONS[1]])

    assert embedder.query_runtime == "torch"
    assert np.array_equal(vector, torch_embedder.embed([QUESTIONS[1]]))
    assert str(graph) in caplog.text and "delete the file" in caplog.text
