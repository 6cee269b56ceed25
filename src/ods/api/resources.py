"""What one API server process opens once and shares between its requests.

A CLI command opens the catalog, the embedder, the index and the LLM for one question and exits; a server
that did the same would pay the catalog's engine and migration check, a Milvus connection and a collection
load on every request. :class:`Resources` opens each on first use (or all at once with ``--preload``) and
keeps it until the server stops.

Requests run in worker threads. The catalog (a SQLAlchemy engine with its pool), the Milvus client and the
OpenAI client are safe to share. The models are not, quite: a Hugging Face fast tokenizer raises "Already
borrowed" when two threads change its padding state at once, so all in-process model work (embedding,
answering) takes :attr:`Resources.model_lock` in turn; on the 2-4 cores the server targets, running two
forward passes at once would not finish either sooner.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ods.factories import build_embedder, open_catalog, open_index, open_llm
from ods.settings import Settings

if TYPE_CHECKING:
    from ods.adapters.catalog import Catalog
    from ods.adapters.catalog.records import KnowledgeBaseRecord
    from ods.adapters.milvus.index import MilvusVectorIndex
    from ods.adapters.models.embedder import Embedder
    from ods.adapters.models.llm import LLM


class Resources:
    """The catalog, the embedder, the LLM and each knowledge base's index, opened once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_lock = threading.RLock()
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._embedder: Embedder | None = None
        self._llm: LLM | None = None
        self._indexes: dict[str, MilvusVectorIndex] = {}
        self._closed = False

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened (and migrated) on first use."""
        with self._lock:
            self._check_open()
            if self._catalog is None:
                self._catalog = open_catalog(self.settings)
            return self._catalog

    @property
    def embedder(self) -> Embedder:
        """The configured embedder (its model loads on the first embedding; hold :attr:`model_lock`)."""
        with self._lock:
            self._check_open()
            if self._embedder is None:
                self._embedder = build_embedder(self.settings.embedding)
            return self._embedder

    @property
    def llm(self) -> LLM:
        """The configured LLM (an in-process one loads on its first completion)."""
        with self._lock:
            self._check_open()
            if self._llm is None:
                self._llm = open_llm(self.settings)
            return self._llm

    def index(self, record: KnowledgeBaseRecord) -> MilvusVectorIndex:
        """The open index of a knowledge base, by its collection (opened on its first search)."""
        with self._lock:
            self._check_open()
            index = self._indexes.get(record.collection_name)
            if index is None:
                index = open_index(self.settings, record)
                self._indexes[record.collection_name] = index
            return index

    def preload(self) -> None:
        """Open the catalog and load the models now, so the first request waits for none of it."""
        from ods.adapters.models.llm import TransformersLLM

        self.catalog.migrate()
        llm = self.llm
        with self.model_lock:
            self.embedder.embed(["ods serve preload"])
            if isinstance(llm, TransformersLLM):
                llm.loaded  # noqa: B018 - the property loads the weights

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the server's resources are closed")

    def close(self) -> None:
        """Close every index and the catalog; later use raises."""
        with self._lock:
            self._closed = True
            indexes, self._indexes = list(self._indexes.values()), {}
            catalog, self._catalog = self._catalog, None
        for index in indexes:
            index.close()
        if catalog is not None:
            catalog.close()
