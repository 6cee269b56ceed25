"""The packaged sentence-transformers model run by ONNX Runtime, for the few texts of a question.

A warm question's embedding was ~20 ms of torch forward pass on two cores, the whole latency budget of a
search; the same graph under ONNX Runtime (all graph optimisations, fp32) embeds it in ~4-10 ms and gives
the same vectors (largest difference 1.5e-7 on the benchmark's questions), so vectors stored by an ingest
run with torch still match (benchmarks/query_embedding.py). The graph is exported from the loaded torch
model once, into a cache folder, then reused by every later process; it is checked against torch on a
probe text when exported, and refused if they differ.

Only models whose pipeline is a Transformer, mean pooling and normalisation (all-MiniLM-L6-v2 and its
kind) are exported; anything else, or a missing onnxruntime, stays on torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_LOG = logging.getLogger(__name__)
EXPORT_VERSION = "1"  # bump when the exported graph changes, so stale cached graphs are not reused
ONNX_OPSET = 17
SIMILAR = 1e-4
"""Largest difference between a torch and an ONNX vector of the probe text accepted (measured 1.5e-7)."""
_PROBE = "How are descriptive titles made up for technical reports?"
_MEAN_POOLING_ONLY = {
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}


class OnnxUnavailableError(Exception):
    """The ONNX path cannot serve this model here; the caller stays on torch (the message says why)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ods/onnx`` (``~/.cache/ods/onnx``): exported graphs, ~90 MB per model."""
    from ods.adapters.models.packaged import user_cache_dir

    return user_cache_dir("onnx")


def check_exportable(model_dir: Path) -> None:
    """Raise :class:`OnnxUnavailableError` unless onnxruntime is installed and ``model_dir`` is a
    Transformer + mean pooling + normalisation sentence-transformers model."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise OnnxUnavailableError(
            "onnxruntime is not installed (pip install onnxruntime); questions are embedded with torch"
        ) from None
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        pooling_dir = next(module["path"] for module in modules if module["type"].endswith("Pooling"))
        pooling = json.loads((model_dir / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration) as error:
        raise OnnxUnavailableError(
            f"{model_dir} has no readable sentence-transformers modules: {error}"
        ) from None
    if kinds != ["Transformer", "Pooling", "Normalize"] or any(
        pooling.get(name, False) != wanted for name, wanted in _MEAN_POOLING_ONLY.items()
    ):
        raise OnnxUnavailableError(f"{model_dir} is not Transformer + mean pooling + Normalize ({kinds})")


class OnnxSentenceEncoder:
    """Normalised embeddings of a mean-pooling sentence-transformers model from its ONNX export.

    ``load_torch_model`` gives the loaded ``SentenceTransformer``; it is called only when the graph is
    not cached yet (to export it and to check the export)."""

    def __init__(self, model_dir: Path, cache_dir: Path, load_torch_model: Any) -> None:
        check_exportable(model_dir)
        self._model_dir = model_dir
        self._cache_dir = cache_dir
        self._load_torch_model = load_torch_model
        self._max_tokens = self._read_max_tokens()
        self._session: Any = None
        self._tokenizer: Tokenizer | None = None
        self._lock = threading.Lock()

    def _read_max_tokens(self) -> int:
        """The model's ``max_seq_length`` (``sentence_bert_config.json``; else the loaded model's): a
        question is truncated where torch truncates it, without loading torch when the graph is cached."""
        try:
            config = json.loads((self._model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
            return int(config["max_seq_length"])
        except (OSError, ValueError, KeyError, TypeError):
            return int(self._load_torch_model().max_seq_length or 512)

    @property
    def graph_path(self) -> Path:
        """Where this model's exported graph is cached: keyed by the weights' names, sizes and times, the
        torch version and :data:`EXPORT_VERSION`."""
        from importlib.metadata import version

        weights = sorted(self._model_dir.glob("*.safetensors")) + sorted(self._model_dir.glob("*.bin"))
        facts = [str(self._model_dir.resolve()), version("torch"), EXPORT_VERSION, str(self._max_tokens)]
        facts += [f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in weights]
        key = hashlib.sha256("\n".join(facts).encode("utf-8")).hexdigest()[:16]
        return self._cache_dir / f"{self._model_dir.name}-{key}.onnx"

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised float32 row per text (truncated to ``max_tokens`` tokens, as torch does)."""
        session, tokenizer = self._open()
        return self._run(session, tokenizer, list(texts))

    def _open(self) -> tuple[Any, Tokenizer]:
        with self._lock:
            if self._session is None or self._tokenizer is None:
                self._tokenizer = self._read_tokenizer()
                path = self.graph_path
                if not path.is_file():
                    self._export(path)
                self._session = self._start_session(path)
                if not path.with_suffix(".checked").is_file():
                    self._check(path)
            return self._session, self._tokenizer

    def _read_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(self._model_dir / "tokenizer.json"))
        except Exception as error:  # noqa: BLE001 - the tokenizers library raises untyped exceptions
            raise OnnxUnavailableError(f"cannot read {self._model_dir / 'tokenizer.json'}: {error}") from None
        tokenizer.enable_truncation(max_length=self._max_tokens)
        tokenizer.enable_padding()
        return tokenizer

    def _start_session(self, path: Path) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
        try:
            return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors share no base class
            raise OnnxUnavailableError(f"ONNX Runtime cannot load {path}: {error}; delete the file") from None

    def _export(self, path: Path) -> None:
        """Export the torch model (Transformer, mean pooling, normalisation: one graph) to ``path``,
        atomically, so processes exporting at once never read half a file."""
        import torch

        model = self._load_torch_model()
        graph = _mean_pooled(model[0].auto_model).eval()
        features = (getattr(model, "preprocess", None) or model.tokenize)([_PROBE, "a shorter text"])
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        os.close(handle)
        try:
            # The tracer warns about shape checks it freezes; none matters to a text encoder (the
            # export is checked against torch on a padded batch of two lengths below).
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    graph,
                    (features["input_ids"], features["attention_mask"]),
                    partial,
                    input_names=["input_ids", "attention_mask"],
                    output_names=["embedding"],
                    dynamic_axes={
                        "input_ids": {0: "texts", 1: "tokens"},
                        "attention_mask": {0: "texts", 1: "tokens"},
                        "embedding": {0: "texts"},
                    },
                    opset_version=ONNX_OPSET,
                    dynamo=False,
                )
            Path(partial).chmod(0o644)  # mkstemp's 0600 would keep other users of a shared cache out
            Path(partial).replace(path)
        except Exception as error:  # noqa: BLE001 - the exporter raises many kinds; torch serves then
            Path(partial).unlink(missing_ok=True)
            raise OnnxUnavailableError(f"exporting {self._model_dir} to ONNX failed: {error}") from None
        _LOG.info("exported %s to %s for ONNX Runtime", self._model_dir, path)

    def _check(self, path: Path) -> None:
        """Compare the graph's vectors of a probe text, alone and padded in a batch, with torch's."""
        model = self._load_torch_model()
        texts = [_PROBE, "a shorter text"]
        expected = model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        session, tokenizer = self._session, self._tokenizer
        assert session is not None and tokenizer is not None
        difference = max(
            float(np.abs(self._run(session, tokenizer, texts) - expected).max()),
            float(np.abs(self._run(session, tokenizer, texts[:1])[0] - expected[0]).max()),
        )
        if difference > SIMILAR:
            path.unlink(missing_ok=True)
            self._session = None
            raise OnnxUnavailableError(
                f"the ONNX export of {self._model_dir} differs from torch by {difference:.1e}"
            )
        path.with_suffix(".checked").write_text(f"{difference:.2e}\n", encoding="utf-8")

    @staticmethod
    def _run(session: Any, tokenizer: Tokenizer, texts: list[str]) -> NDArray[np.float32]:
        encodings = tokenizer.encode_batch(texts)
        ids = np.asarray([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        try:
            result: NDArray[np.float32] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors share no base class
            raise OnnxUnavailableError(f"ONNX Runtime failed on {len(texts)} texts: {error}") from None
        return result.astype(np.float32, copy=False)


def _mean_pooled(transformer: Any) -> Any:
    """The export's torch module over ``transformer`` (a class made on first use: torch loads late)."""
    import torch

    class MeanPooled(torch.nn.Module):
        """The transformer's token vectors averaged over the real tokens, then L2-normalised: what the
        sentence-transformers Pooling (mean) and Normalize modules compute."""

        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.transformer(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooled(transformer)
