"""Every adapter built from the settings: the one place that turns ``Settings`` into clients.

Stages, the CLI and the tasks call these; adapters keep their own constructors and never import this
module. Adapters are imported inside each builder, so importing the factories loads no client library
(the CLI imports what one command needs, in the time a person waits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from ods.errors import SettingsError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from ods.adapters.catalog import Catalog, DatasetCatalog
    from ods.adapters.catalog.records import KnowledgeBaseRecord
    from ods.adapters.documents.source import DocumentSource
    from ods.adapters.milvus.index import MilvusVectorIndex
    from ods.adapters.models.embedder import Embedder
    from ods.adapters.models.llm import LLM, ResolvedEndpoint
    from ods.adapters.object_store import ObjectStore
    from ods.adapters.warehouse import DuckDBWarehouse, SqlDatabaseWarehouse
    from ods.adapters.warehouse.query_process import QueryLimits
    from ods.settings import EmbeddingSettings, LLMSettings, Settings


# -- catalog and object store ----------------------------------------------------------------------------


def open_catalog(settings: Settings, *, stamp_owner: bool = True) -> Catalog:
    """The catalog named by the settings (migrated on first use), creating rows of ``ODS_TENANT``, owned by
    ``ODS_OWNER`` unless a call names the owner. `ods serve` passes ``stamp_owner=False``: its routes name
    each caller, and a row created with none named (a model its run trains) gets no owner, not the
    server process's."""
    from ods.adapters.catalog import Catalog

    return Catalog.open(
        settings.catalog_url,
        echo=settings.catalog.echo,
        connect_timeout_s=settings.catalog.connect_timeout_s,
        tenant=settings.tenant,
        creator=settings.owner if stamp_owner else None,
    )


def build_object_store(settings: Settings) -> ObjectStore:
    """The object store the settings name (``ODS_OBJECT_STORE__KIND``); nothing is contacted yet."""
    from ods.adapters.object_store import LocalObjectStore

    config = settings.object_store
    if config.kind == "local":
        return LocalObjectStore(settings.object_store_root)
    from ods.adapters.object_store.minio_store import MinioObjectStore

    if config.endpoint is None or config.access_key is None or config.secret_key is None:
        raise SettingsError(
            "ODS_OBJECT_STORE__KIND=minio needs ODS_OBJECT_STORE__ENDPOINT, ODS_OBJECT_STORE__ACCESS_KEY "
            "and ODS_OBJECT_STORE__SECRET_KEY"
        )
    return MinioObjectStore(
        config.endpoint,
        config.bucket,
        config.access_key.get_secret_value(),
        config.secret_key.get_secret_value(),
        secure=config.secure,
        region=config.region,
    )


def open_source(settings: Settings, uri: str) -> DocumentSource:
    """The document source at ``uri`` (a folder, or a prefix of the configured bucket)."""
    from ods.adapters.documents.source import DocumentSource

    store = build_object_store(settings) if uri.startswith("s3://") else None
    return DocumentSource(uri, store)


# -- models ------------------------------------------------------------------------------------------------


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    """The embedder the settings describe; nothing is loaded or contacted until first use."""
    from pathlib import Path

    from ods.adapters.models.embedder import (
        PACKAGED_MODEL_ID,
        EmbeddingError,
        OpenAIEmbedder,
        SentenceTransformerEmbedder,
    )

    if settings.kind == "openai":
        assert settings.endpoint is not None  # the settings validator guarantees it
        return OpenAIEmbedder(
            settings.endpoint,
            settings.model,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            batch_size=settings.batch_size,
        )

    def local(model_dir: Path | None, model_id: str) -> SentenceTransformerEmbedder:
        return SentenceTransformerEmbedder(
            model_dir,
            model_id=model_id,
            batch_size=settings.batch_size,
            query_runtime=settings.query_runtime,
            onnx_cache_dir=settings.onnx_cache,
            query_cache=settings.query_cache,
        )

    if settings.model == PACKAGED_MODEL_ID:
        return local(None, PACKAGED_MODEL_ID)
    model_dir = Path(settings.model).expanduser()
    if not (model_dir / "config.json").is_file():
        raise EmbeddingError(
            f"embedding model {settings.model!r} is neither the packaged {PACKAGED_MODEL_ID!r} nor a "
            "sentence-transformers model folder; models cannot be downloaded offline: set "
            f"ODS_EMBEDDING__MODEL={PACKAGED_MODEL_ID} or to a local model folder"
        )
    return local(model_dir, model_dir.name)


def build_llm(
    settings: LLMSettings, *, resolve_endpoint: Callable[[str], ResolvedEndpoint | None] | None = None
) -> LLM:
    """The LLM the settings describe; nothing is loaded or contacted until the first completion.

    For ``kind=openai`` without ``ODS_LLM__ENDPOINT``, ``resolve_endpoint(model)`` supplies the URL and
    the served model id (the active endpoint the catalog records for a deployed model: `transformers
    serve` names a model by its folder, so the id sent may differ from the catalog name).
    """
    from pathlib import Path

    from ods.adapters.models.llm import PACKAGED_MODEL_ID, LLMError, OpenAIChatLLM, TransformersLLM

    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    if settings.kind == "openai":
        if settings.endpoint:
            return OpenAIChatLLM(
                settings.endpoint, settings.model, api_key=api_key, timeout_s=settings.timeout_s
            )
        resolved = resolve_endpoint(settings.model) if resolve_endpoint is not None else None
        if resolved is None:
            raise LLMError(
                f"no endpoint for LLM model {settings.model!r}: set ODS_LLM__ENDPOINT (e.g. "
                "http://host:8000/v1), or deploy the model so the catalog records an active endpoint for it"
            )
        return OpenAIChatLLM(
            resolved.url,
            resolved.served_model or settings.model,
            api_key=api_key,
            timeout_s=settings.timeout_s,
        )
    if settings.model == PACKAGED_MODEL_ID:
        return TransformersLLM(timeout_s=settings.timeout_s, gguf_cache=settings.gguf_cache)
    path = Path(settings.model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return TransformersLLM(
            path.parent, gguf_file=path.name, timeout_s=settings.timeout_s, gguf_cache=settings.gguf_cache
        )
    if (path / "config.json").is_file():
        return TransformersLLM(path, timeout_s=settings.timeout_s)
    raise LLMError(
        f"local LLM model {settings.model!r} is neither the packaged {PACKAGED_MODEL_ID!r}, a .gguf file nor "
        f"a Hugging Face model folder; models cannot be downloaded offline: set ODS_LLM__MODEL="
        f"{PACKAGED_MODEL_ID} or to a local model folder, or ODS_LLM__KIND=openai with ODS_LLM__ENDPOINT"
    )


def open_llm(settings: Settings) -> LLM:
    """The configured model; ``kind=openai`` without an endpoint uses the model's active catalog endpoint."""
    from ods.adapters.models.llm import ResolvedEndpoint

    def active_endpoint(model_name: str) -> ResolvedEndpoint | None:
        with open_catalog(settings) as catalog:
            endpoint = catalog.active_endpoint(model_name)
        return ResolvedEndpoint(endpoint.url, endpoint.served_model) if endpoint is not None else None

    return build_llm(settings.llm, resolve_endpoint=active_endpoint)


# -- Milvus ------------------------------------------------------------------------------------------------


def open_milvus(settings: Settings, *, ingesting: bool = False) -> MilvusClient:
    """A client of the configured Milvus (``ODS_MILVUS__URI``, its token); a Milvus Lite file served as
    :func:`lite_serving` says (``ingesting``: for work that writes while this process embeds)."""
    from ods.adapters.milvus.client import open_milvus_client

    token = settings.milvus.token.get_secret_value() if settings.milvus.token else None
    serving = lite_serving(settings, ingesting=ingesting)
    return open_milvus_client(
        settings.milvus_uri,
        token=token,
        separate_process=serving == "own_process",
        shared=serving == "shared",
    )


def lite_serving(settings: Settings, *, ingesting: bool) -> Literal["in_process", "own_process", "shared"]:
    """Where a Milvus Lite file opened for this work is served from (``ODS_MILVUS__LITE_SERVER``): ``auto``
    is the file's shared server for ingestion (so `ods serve` and other runs can use the file meanwhile),
    this process otherwise. A shared server that already runs is used whatever this says."""
    choice = settings.milvus.lite_server
    if choice == "auto":
        return "shared" if ingesting else "in_process"
    return choice


def with_shared_lite_server(settings: Settings) -> Settings:
    """``settings`` for a long-lived process others work beside (`ods serve`): ``auto`` becomes ``shared``,
    so every Milvus Lite file it opens is served by the file's shared server, which ingest runs join."""
    if settings.milvus.lite_server != "auto":
        return settings
    milvus = settings.milvus.model_copy(update={"lite_server": "shared"})
    return settings.model_copy(update={"milvus": milvus})


def open_index(
    settings: Settings, record: KnowledgeBaseRecord, *, ingesting: bool = False
) -> MilvusVectorIndex:
    """The vector index of a knowledge base, its collection created if missing. ``ingesting``: opened to
    write while this process embeds (a Milvus Lite file is then served from a process of its own, see
    :func:`lite_serving`)."""
    from ods.adapters.milvus.index import MilvusVectorIndex

    lite_file = snapshot_lite_file(settings)
    index = MilvusVectorIndex(
        open_milvus(settings, ingesting=ingesting),
        record.collection_name,
        record.embedding_dim,
        record.embedding_model,
        # With dense snapshots, Milvus Lite's dense index only serves searches between a write by another
        # client and the next ingest. FLAT builds nothing: at 19,579 chunks it halved the Lite server's CPU
        # during an ingest (36 s → 17 s) and searched faster (34 ms vs 93 ms, exact); at 100k chunks that
        # fallback is slower (275 ms vs ~70 ms) until the next ingest. Set on creation only.
        index_type="FLAT" if lite_file is not None else "HNSW",
        analyzer=settings.milvus.analyzer,
        owns_client=True,
        lite_file=lite_file,
        uri=settings.milvus_uri,
        retry_s=settings.milvus.retry_s,
    )
    index.ensure_collection()
    return index


def snapshot_lite_file(settings: Settings) -> str | None:
    """The Milvus Lite file whose collections get dense snapshots; None for a server or with them off."""
    from ods.adapters.milvus.client import is_server_uri

    if not settings.milvus.dense_snapshot or is_server_uri(settings.milvus_uri):
        return None
    return settings.milvus_uri


# -- warehouses --------------------------------------------------------------------------------------------


def query_limits(settings: Settings) -> QueryLimits:
    """The resource limits of ``ODS_WAREHOUSE__*`` for one query."""
    from ods.adapters.warehouse.query_process import QueryLimits
    from ods.domain.copied_fields import copy_fields

    return copy_fields(QueryLimits, settings.warehouse)


def open_warehouse(
    settings: Settings, catalog: DatasetCatalog, datasets: Sequence[str] | None = None
) -> DuckDBWarehouse:
    """A DuckDB warehouse over the newest registered version of every dataset, or over ``datasets``
    (``["sales", "regions@2"]``), read from the configured object store, with the limits of
    ``ODS_WAREHOUSE__*``."""
    from ods.adapters.warehouse import DuckDBWarehouse, resolve_dataset_versions

    versions = resolve_dataset_versions(catalog, datasets)
    return DuckDBWarehouse.from_versions(
        versions,
        build_object_store(settings),
        limits=query_limits(settings),
        max_rows=settings.warehouse.max_rows,
    )


def open_sql_database_warehouse(settings: Settings) -> SqlDatabaseWarehouse:
    """The external database named by ``ODS_WAREHOUSE__URL``, limited to ``ODS_WAREHOUSE__TABLES``."""
    from ods.adapters.warehouse import SqlDatabaseWarehouse

    config = settings.warehouse
    if config.url is None:
        raise SettingsError(
            "no warehouse database is configured: set ODS_WAREHOUSE__URL (and ODS_WAREHOUSE__TABLES)"
        )
    return SqlDatabaseWarehouse.open(
        config.url.get_secret_value(), config.tables, max_rows=config.max_rows, limits=query_limits(settings)
    )
