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

SQL runs in a DuckDB warehouse whose query process takes ~1 s to start and register the Parquet tables, so
the warehouses of the last few sets of dataset versions asked for are kept (one query at a time each); a
newly registered version makes a new set, so nothing stale is ever queried.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ods.domain.identity import DEFAULT_TENANT
from ods.factories import build_embedder, open_catalog, open_index, open_llm, open_warehouse
from ods.settings import Settings

if TYPE_CHECKING:
    from ods.adapters.catalog import Catalog
    from ods.adapters.catalog.records import KnowledgeBaseRecord
    from ods.adapters.milvus.index import MilvusVectorIndex
    from ods.adapters.models.embedder import Embedder
    from ods.adapters.models.llm import LLM
    from ods.adapters.warehouse import DuckDBWarehouse

# Each kept warehouse holds a query process (up to ODS_WAREHOUSE__MEMORY_LIMIT_MB while it queries).
KEPT_WAREHOUSES = 4


@dataclass
class _KeptWarehouse:
    warehouse: DuckDBWarehouse
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.warehouse.close()


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
        self._warehouses: OrderedDict[tuple[int, ...], _KeptWarehouse] = OrderedDict()
        self._warehouses_lock = threading.Lock()
        self._closed = False

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened (and migrated) on first use."""
        with self._lock:
            self._check_open()
            if self._catalog is None:
                self._catalog = open_catalog(self.settings, stamp_owner=False)
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

    @contextmanager
    def warehouse(
        self, datasets: Sequence[str] | None, tenant: str = DEFAULT_TENANT
    ) -> Iterator[DuckDBWarehouse]:
        """The warehouse over ``tenant``'s ``datasets`` (``["sales", "regions@2"]``; None: the newest
        registered version of every dataset), held for this caller alone until the block ends (kept by
        version ids, so two tenants' ``sales`` are two warehouses)."""
        from ods.adapters.warehouse import resolve_dataset_versions

        catalog = self.catalog.for_tenant(tenant)
        versions = resolve_dataset_versions(catalog, datasets)
        key = tuple(sorted(record.id for record in versions))
        while True:
            with self._warehouses_lock:
                self._check_open()
                kept = self._warehouses.pop(key, None)
                if kept is None:
                    refs = [f"{record.dataset_name}@{record.version}" for record in versions]
                    kept = _KeptWarehouse(open_warehouse(self.settings, catalog, refs))
                self._warehouses[key] = kept  # the most recently used last
                evicted = []
                while len(self._warehouses) > KEPT_WAREHOUSES:
                    evicted.append(self._warehouses.popitem(last=False)[1])
            for old in evicted:
                old.close()  # waits for a query still running on it
            with kept.lock:
                if kept.closed:  # evicted or closed between the lookup and the lock: look again
                    continue
                yield kept.warehouse
                return

    def preload(self) -> None:
        """Open the catalog and load the models now, so the first request waits for none of it."""
        from ods.adapters.models.llm import TransformersLLM

        self.catalog.migrate()
        llm = self.llm

        def load() -> None:
            with self.model_lock:
                self.embedder.embed(["ods serve preload"])
                if isinstance(llm, TransformersLLM):
                    llm.loaded  # noqa: B018 - the property loads the weights

        # On a thread that ends: torch driven from the main thread too left the requests' forward passes
        # ~5 ms slower (their second intra-op thread stopped helping; benchmarks/README.md).
        loader = threading.Thread(target=load, name="ods-preload")
        loader.start()
        loader.join()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the server's resources are closed")

    def close(self) -> None:
        """Close every warehouse, index and the catalog; later use raises."""
        with self._lock, self._warehouses_lock:
            self._closed = True
            indexes, self._indexes = list(self._indexes.values()), {}
            warehouses, self._warehouses = list(self._warehouses.values()), OrderedDict()
            catalog, self._catalog = self._catalog, None
        for warehouse in warehouses:
            warehouse.close()
        for index in indexes:
            index.close()
        if catalog is not None:
            catalog.close()


@dataclass(frozen=True)
class TenantAdapters:
    """The server's kept catalog, embedder and indexes as one tenant's answer sees them: the catalog is
    that tenant's view (:meth:`Catalog.for_tenant`), so a knowledge base or dataset named in a question is
    the tenant's own."""

    resources: Resources
    tenant: str

    @property
    def catalog(self) -> Catalog:
        return self.resources.catalog.for_tenant(self.tenant)

    @property
    def embedder(self) -> Embedder:
        return self.resources.embedder

    def index(self, record: KnowledgeBaseRecord) -> MilvusVectorIndex:
        return self.resources.index(record)
