"""The one typed settings tree of the platform.

Every value comes from ``ODS_``-prefixed environment variables (``__`` separates nesting levels,
e.g. ``ODS_OBJECT_STORE__KIND=minio``) or a ``.env`` file in the working directory. Nothing is read at
import time: call :func:`get_settings` (cached) or :func:`load_settings` (fresh, for tests and tools).
"""

from __future__ import annotations

import getpass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ods.domain.identity import DEFAULT_TENANT, check_tenant
from ods.errors import SettingsError
from ods.settings.api import ApiSettings as ApiSettings
from ods.settings.api import AuditSettings as AuditSettings
from ods.settings.api import AuthSettings as AuthSettings
from ods.settings.api import WebhookSettings as WebhookSettings
from ods.settings.quotas import QuotaSettings as QuotaSettings
from ods.settings.quotas import TenantQuota as TenantQuota

Profile = Literal["local", "cluster"]


class CatalogSettings(BaseModel):
    """Where the catalog (datasets, models, endpoints, documents, conversations) lives."""

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host:5432/ods. "
        "Unset: a SQLite file under ODS_HOME (local profile only). Kept secret: it may carry a password.",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Seconds to wait for the database.")


class ObjectStoreSettings(BaseModel):
    """Where raw files, Parquet dataset versions, documents and model artifacts are stored."""

    kind: Literal["local", "minio"] = Field(
        default="local", description="'local': a directory under ODS_HOME; 'minio': any S3-compatible server."
    )
    root: Path | None = Field(
        default=None, description="Root directory of the local store (default ODS_HOME/objects)."
    )
    endpoint: str | None = Field(default=None, description="host:port of the S3/MinIO server (kind=minio).")
    bucket: str = Field(
        default="ods",
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$",
        description="Bucket holding everything the platform writes.",
    )
    access_key: SecretStr | None = Field(default=None, description="S3 access key (kind=minio).")
    secret_key: SecretStr | None = Field(default=None, description="S3 secret key (kind=minio).")
    secure: bool = Field(default=False, description="Use HTTPS to reach the S3 server.")
    region: str | None = Field(default=None, description="S3 region, when the server needs one.")

    @model_validator(mode="after")
    def _minio_needs_endpoint(self) -> ObjectStoreSettings:
        if self.kind == "minio":
            missing = [
                f"ODS_OBJECT_STORE__{name.upper()}"
                for name in ("endpoint", "access_key", "secret_key")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"kind 'minio' needs {', '.join(missing)} to be set")
            assert self.endpoint is not None
            if "://" in self.endpoint or "/" in self.endpoint:
                raise ValueError(
                    f"endpoint must be host:port without a scheme or path (got {self.endpoint!r}); "
                    "set ODS_OBJECT_STORE__SECURE=true for HTTPS"
                )
        return self


class MilvusSettings(BaseModel):
    """The vector index."""

    uri: str | None = Field(
        default=None,
        description="Milvus URI (http://host:19530) or a Milvus Lite file path. Unset: ODS_HOME/milvus.db.",
    )
    token: SecretStr | None = Field(default=None, description="Milvus token ('user:password' or API key).")
    lite_server: Literal["auto", "in_process", "own_process", "shared"] = Field(
        default="auto",
        description=(
            "Where a Milvus Lite file is served from: 'in_process' (threads of the process using it), "
            "'own_process' (a server process of its own, so its work does not hold the caller's GIL), "
            "'shared' (one server process per file that every ods process reaches, recorded beside the "
            "file: `ods serve` and ingest runs work at the same time), 'auto' (shared for ingestion and "
            "`ods serve`; in process otherwise). A shared server already running is always used."
        ),
    )
    dense_snapshot: bool = Field(
        default=True,
        description=(
            "Milvus Lite only: end each ingest by writing a snapshot of the collection's vectors beside the "
            "file (~2.2 KB per chunk), from which dense search ranks every chunk exactly in milliseconds "
            "(Milvus Lite itself scans every row in Python per search). Ignored for a Milvus server."
        ),
    )

    analyzer: Literal["english", "standard"] = Field(
        default="english",
        description=(
            "How BM25 search splits text into terms. 'english': lowercased words, Snowball-stemmed "
            "('running' finds 'runs'), English stop words dropped; 'standard': lowercased words only. Both "
            "index Chinese, Japanese and Korean text as character bigrams. A Milvus server creates new "
            "collections with it (existing ones keep theirs: `ods kb status` shows it); on a Milvus Lite "
            "file it is the analyzer of the sparse snapshot written with the dense one."
        ),
    )

    retry_s: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description=(
            "How long a Milvus call keeps retrying, with backoff, while Milvus is unreachable, restarting or "
            "not ready (connection refused/reset, unavailable, timeouts) before it fails naming the URI; "
            "0 fails at the first such error. Requests Milvus refuses (schema, dimension) never retry."
        ),
    )

    def lite_in_own_process(self, *, ingesting: bool) -> bool:
        """Whether a Milvus Lite file opened for this work is served from a process of its own."""
        return self.lite_server == "own_process" or (self.lite_server == "auto" and ingesting)


def _unset_when_empty(value: object) -> object:
    """An empty environment value (``ODS_LLM__GGUF_CACHE=``) means the default folder: pydantic would read
    it as ``Path("")``, the working folder, and fill it with a cache."""
    return None if value == "" else value


class EmbeddingSettings(BaseModel):
    """The embedding model used to index and query knowledge bases."""

    kind: Literal["local", "openai"] = Field(
        default="local",
        description="'local': sentence-transformers in-process; 'openai': an OpenAI-compatible /v1/embeddings.",
    )
    model: str = Field(default="all-MiniLM-L6-v2", min_length=1, description="Embedding model id.")
    endpoint: str | None = Field(default=None, description="Base URL of the embeddings server (kind=openai).")
    api_key: SecretStr | None = Field(default=None, description="API key of the embeddings server.")
    batch_size: int = Field(default=64, ge=1, le=4096, description="Texts per embedding batch.")
    query_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="kind=local: what embeds a question (a call of at most 8 texts; ingest batches stay on "
        "torch). 'onnx': the model's ONNX export under ONNX Runtime, exported once into ONNX_CACHE and checked "
        "against torch (same vectors to ~1e-7; a CISI question in ~4-10 ms instead of ~20-40 ms, "
        "docs/retrieval.md); torch is used, with one logged warning, when onnxruntime is missing or the "
        "model is not Transformer + mean pooling + Normalize. 'torch': always torch.",
    )
    onnx_cache: Path | None = Field(
        default=None,
        description="Folder of the exported ONNX graphs (~90 MB per model); unset or empty: "
        "$XDG_CACHE_HOME/ods/onnx (~/.cache/ods/onnx).",
    )
    _onnx_cache_empty = field_validator("onnx_cache", mode="before")(_unset_when_empty)
    query_cache: int = Field(
        default=256,
        ge=0,
        le=100_000,
        description="kind=local: vectors of this many recent questions kept in memory, so a repeated question "
        "costs no forward pass (0: off).",
    )

    @model_validator(mode="after")
    def _openai_needs_endpoint(self) -> EmbeddingSettings:
        if self.kind == "openai" and not self.endpoint:
            raise ValueError("kind 'openai' needs ODS_EMBEDDING__ENDPOINT (e.g. http://host:8000/v1)")
        return self


class LLMSettings(BaseModel):
    """The language model that answers questions and writes SQL."""

    kind: Literal["local", "openai"] = Field(
        default="local",
        description="'local': SmolLM2-135M-Instruct in-process; 'openai': an OpenAI-compatible endpoint.",
    )
    model: str = Field(default="SmolLM2-135M-Instruct", min_length=1, description="Model name to request.")
    endpoint: str | None = Field(
        default=None,
        description="Base URL of the chat server (kind=openai), with or without /v1. Unset: the active "
        "endpoint the catalog records for the deployed model named by ODS_LLM__MODEL.",
    )
    api_key: SecretStr | None = Field(default=None, description="API key of the chat server.")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds to wait for one completion.")
    gguf_cache: Path | None = Field(
        default=None,
        description="kind=local: folder where a GGUF model (the packaged SmolLM2) is kept converted after its "
        "first load, as fp32 safetensors (~540 MB for SmolLM2-135M, the same weights): later processes load it "
        "in ~3.6 s instead of ~17.7 s (benchmarks/llm_load.py). Unset or empty: $XDG_CACHE_HOME/ods/llm "
        "(~/.cache/ods/llm).",
    )

    _gguf_cache_empty = field_validator("gguf_cache", mode="before")(_unset_when_empty)


class AnswerSettings(BaseModel):
    """How questions are answered: how much is retrieved, what counts as relevant, how long answers run."""

    top_k: int = Field(default=5, ge=1, le=50, description="Passages offered to the model per question.")
    min_relevance: float = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity the best passage must reach, else the answer says nothing relevant "
        "was found (all-MiniLM-L6-v2: unrelated text scores ~0.0-0.2, a matching passage ~0.4+).",
    )
    max_tokens: int = Field(default=256, ge=16, le=8192, description="Longest answer, in model tokens.")
    history_turns: int = Field(
        default=6, ge=0, le=50, description="Earlier messages of a conversation sent with a follow-up."
    )
    style: Literal["auto", "generative", "extractive"] = Field(
        default="auto",
        description="'generative': the model writes the answer from the sources; 'extractive': the answer "
        "quotes the best-matching sentences and the query result, without a model call; 'auto': "
        "extractive with the packaged SmolLM2-135M (too small to answer faithfully), generative otherwise.",
    )


class SearchSettings(BaseModel):
    """How a hybrid search (the default of `ods kb search`, `ods ask` and the API) fuses its two lists: the
    chunks closest in meaning (dense) and those sharing the most words (BM25)."""

    fusion: Literal["rrf", "convex"] = Field(
        default="convex",
        description="'convex' (default): a weighted sum of each list's scores, normalised per query "
        "(ODS_SEARCH__NORMALISATION); 'rrf': reciprocal-rank fusion, each list's ranks only. On CISI convex "
        "fusion ranks at 0.462 nDCG@10, RRF (k 60) at 0.442 (docs/retrieval.md).",
    )
    rrf_k: int = Field(
        default=60, ge=0, le=10_000, description="RRF's constant: a hit scores weight / (rrf_k + rank)."
    )
    dense_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of the dense list in the fusion; the BM25 list gets the rest (0.5: equal). A weight "
        "set per query by how far each side's best hits stand out did not beat a fixed 0.5 on held-out CISI "
        "queries nor on MEDLINE (docs/retrieval.md).",
    )
    normalisation: Literal["minmax", "zscore"] = Field(
        default="zscore",
        description="How 'convex' fusion puts both lists' scores on one scale: 'minmax' (lowest 0, "
        "highest 1) or 'zscore' (distance from the list's mean in standard deviations).",
    )
    candidates: int = Field(
        default=400,
        ge=1,
        le=1_000,
        description="Chunks each side hands the fusion (at least the k asked for): a hit ranked low by one "
        "side can still win on the other's score, and convex fusion's normalisation needs enough of each "
        "list to be stable (CISI nDCG@10 at 100 / 200 / 400 candidates: 0.460 / 0.460 / 0.462).",
    )
    exact_dense: bool = Field(
        default=False,
        description="'convex' fusion only: score the BM25 candidates the dense list lacks by their exact "
        "cosine similarity (read from the index) instead of the dense list's lowest score.",
    )


class IngestSettings(BaseModel):
    """Per-document limits of knowledge-base ingestion: a document over one is quarantined (``too_large``)
    with a reason naming the limit, before it is chunked or embedded, and the run goes on."""

    max_document_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1,
        description="Largest document file, in bytes (default 100 MiB). Checked against the listing's size "
        "before reading, and again while reading. Scanned PDFs and slide decks with images run to tens of MB; "
        "the flow holds one document's bytes at a time while it is parsed.",
    )
    max_document_chars: int = Field(
        default=5_000_000,
        ge=1,
        description="Most characters of text parsed out of one document (default 5 million: a 2,000-page "
        "book; War and Peace is 3.2 million). Checked in the parser process, so the text of a larger "
        "document never reaches the flow.",
    )
    max_document_chunks: int = Field(
        default=10_000,
        ge=1,
        description="Most chunks one document may make (default 10,000: 2-3 minutes of embedding on 2 CPU "
        "cores; 5 million characters of prose make ~6,700). It stops documents cut into tens of thousands "
        "of tiny sections before they are embedded.",
    )


class PrivacySettings(BaseModel):
    """How personal data is protected when a dataset spec asks for it."""

    hash_salt: SecretStr = Field(
        default=SecretStr(""),
        description="Salt of the 'hash' PII policy; set it in a cluster so hashed values cannot be guessed.",
    )


class WarehouseSettings(BaseModel):
    """An external SQL database that Text-to-SQL may read (besides the registered datasets)."""

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the database, e.g. postgresql+psycopg://reader:pass@host:5432/dw. "
        "Unset: only registered datasets are queryable. Kept secret: it may carry a password.",
    )
    tables: tuple[str, ...] = Field(
        default=(),
        description='Tables questions may read (JSON list, e.g. ["sales", "analytics.orders"]); no other '
        "table is visible.",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds one query may run; a DuckDB query still running 5 % later has its process killed.",
    )
    max_rows: int = Field(default=1000, ge=1, le=100_000, description="Most rows one query returns.")
    memory_limit_mb: int = Field(
        default=512,
        ge=64,
        le=1_048_576,
        description="Memory one query may use, in MB. DuckDB queries run in a process of their own with "
        "DuckDB's memory_limit set to this and the process's data segment capped at this plus 256 MB, so a "
        "query that needs more stops with an error instead of exhausting the machine. PostgreSQL: work_mem "
        "is lowered to a sixteenth of it.",
    )
    threads: int = Field(default=2, ge=1, le=256, description="Threads one DuckDB query may use.")
    max_temp_mb: int = Field(
        default=1024,
        ge=0,
        le=1_048_576,
        description="Disk one DuckDB query may spill to when it outgrows memory, in MB, in a private "
        "temporary directory removed with the warehouse; 0 disables spilling. PostgreSQL: temp_file_limit, "
        "where the warehouse role may set it.",
    )
    max_result_bytes: int = Field(
        default=10_000_000,
        ge=1_000,
        le=2_000_000_000,
        description="Most bytes of values one query's result may hold (text by its UTF-8 length, other "
        "values 8 bytes each); a larger result stops the query with an error saying so.",
    )


class DeployGate(BaseModel):
    """Metric bounds a model version must meet before it is deployed automatically."""

    min: dict[str, float] = Field(default_factory=dict, description="Metric -> lowest passing value.")
    max: dict[str, float] = Field(default_factory=dict, description="Metric -> highest passing value.")
    backend: Literal["vllm", "transformers"] = Field(
        default="vllm",
        description="Server an approved version is deployed on: vllm (deploy-model, GPU pool) or "
        "transformers (deploy-model-cpu, CPU pool).",
    )


class ServingSettings(BaseModel):
    """Model servers that deploy-model starts (`vllm serve` on GPU workers, `transformers serve` on CPU)."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address a model server binds when the deploy-model flow or `ods models deploy --host` "
        "names none: 127.0.0.1 (this machine only). Set 0.0.0.0 (every interface) on a worker whose model "
        "servers other machines must reach, and only behind a network boundary (a container network, a "
        "firewall): the servers ask for no credentials.",
    )


class WatchSettings(BaseModel):
    """Bucket watching, the MinIO webhook bridge and the automatic deploy gate (event-driven runs)."""

    raw_prefix: str = Field(
        default="raw/", description="Key prefix where raw tables and their specs (<name>.yaml) arrive."
    )
    documents_prefix: str = Field(
        default="docs/", description="Key prefix of documents: one folder per knowledge base (docs/<kb>/...)."
    )
    bridge_token: SecretStr | None = Field(
        default=None, description="Shared secret the webhook bridge requires (Authorization: Bearer <token>)."
    )
    deploy_gates: dict[str, DeployGate] = Field(
        default_factory=dict,
        description='Model name -> metric bounds for automatic deployment, e.g. {"support_llm": {"max": '
        '{"eval_loss": 2.5}}}; a model without a gate is never deployed automatically.',
    )

    @field_validator("raw_prefix", "documents_prefix")
    @classmethod
    def _folder_prefix(cls, value: str) -> str:
        if not value.strip("/"):
            raise ValueError("a watched prefix must name a folder, e.g. 'raw/'")
        return value.strip("/") + "/"


def local_owner() -> str:
    """``local:<OS user name>`` (``local`` where the process has no user name): who the CLI and the flows
    create as when ``ODS_OWNER`` is unset; the prefix keeps it apart from token subjects and key names."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # a uid with no passwd entry (containers) and no LOGNAME/USER
        return "local"


class Settings(BaseSettings):
    """Root of the settings tree."""

    model_config = SettingsConfigDict(
        env_prefix="ODS_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(default=Path(".ods"), description="Directory for everything the local profile keeps.")
    profile: Profile = Field(default="local", description="'local' (embedded defaults) or 'cluster'.")
    tenant: str = Field(
        default=DEFAULT_TENANT,
        description="The tenant the CLI and the flows create datasets, models, knowledge bases and "
        "conversations in (ODS_TENANT); `ods serve` uses each caller's own.",
    )
    owner: str = Field(
        default_factory=local_owner,
        min_length=1,
        max_length=200,
        pattern=r"^\S(.*\S)?$",
        description="The subject the CLI and the flows record as the owner of the datasets, models and "
        "knowledge bases they create (ODS_OWNER; default local:<OS user name>); set it to a token's sub "
        "or an API key's name to let that caller edit and delete them as their owner.",
    )
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    object_store: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    milvus: MilvusSettings = Field(default_factory=MilvusSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)

    @field_validator("tenant")
    @classmethod
    def _tenant_follows_the_rule(cls, value: str) -> str:
        return check_tenant(value)

    @model_validator(mode="after")
    def _cluster_needs_servers(self) -> Settings:
        if self.profile == "cluster":
            problems = cluster_profile_problems(self)
            if problems:
                raise ValueError("profile 'cluster' " + "; ".join(problems))
        return self

    @property
    def catalog_url(self) -> str:
        """The effective catalog URL (a SQLite file under ``home`` unless configured)."""
        if self.catalog.url is not None:
            return self.catalog.url.get_secret_value()
        return f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def object_store_root(self) -> Path:
        """Root directory of the local object store."""
        return (self.object_store.root or self.home / "objects").resolve()

    @property
    def milvus_uri(self) -> str:
        """The effective Milvus URI (a Milvus Lite file under ``home`` unless configured)."""
        return self.milvus.uri or str((self.home / "milvus.db").resolve())

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets shown as ``**********``."""
        data = self.model_dump(mode="json")  # SecretStr dumps as '**********'
        data["effective"] = {
            "catalog_url": mask_url(self.catalog_url),
            "object_store_root": str(self.object_store_root) if self.object_store.kind == "local" else None,
            "milvus_uri": self.milvus_uri,
        }
        return data


CLUSTER_MILVUS_SCHEMES = ("http://", "https://", "tcp://")


def cluster_profile_problems(settings: Settings) -> list[str]:
    """What keeps ``settings`` from running as the ``cluster`` profile: each item names the setting and the
    kind of value it has (never the value itself: a catalog URL may carry a password).

    Every process of a cluster (workers, the bridge, pods) must share one catalog, one object store and one
    vector index, so the embedded stand-ins of the local profile are refused by name: a SQLite catalog, a
    local-directory object store, a Milvus Lite file.
    """
    problems = []
    catalog = settings.catalog.url.get_secret_value() if settings.catalog.url is not None else None
    scheme = (catalog or "").partition(":")[0].partition("+")[0].lower()
    if catalog is None:
        problems.append("needs ODS_CATALOG__URL (a PostgreSQL URL)")
    elif scheme == "sqlite":
        problems.append(
            "refuses ODS_CATALOG__URL=<a SQLite URL> (a file only one machine can open): set a PostgreSQL "
            "URL, postgresql+psycopg://user:pass@host:5432/ods"
        )
    elif scheme not in ("postgresql", "postgres"):
        problems.append(
            f"refuses ODS_CATALOG__URL=<a {scheme or 'scheme-less'} URL> (the catalog runs on PostgreSQL "
            "or SQLite only): set a PostgreSQL URL, postgresql+psycopg://user:pass@host:5432/ods"
        )
    if settings.object_store.kind != "minio":
        problems.append(
            f"refuses ODS_OBJECT_STORE__KIND={settings.object_store.kind} (a directory only one machine "
            "sees): set ODS_OBJECT_STORE__KIND=minio with its endpoint and keys"
        )
    uri = settings.milvus.uri
    if uri is None:
        problems.append("needs ODS_MILVUS__URI (a Milvus server, http://host:19530)")
    elif not uri.lower().startswith(CLUSTER_MILVUS_SCHEMES):
        problems.append(
            f"refuses ODS_MILVUS__URI={uri!r} (a Milvus Lite file only one process can open): set a Milvus "
            "server URI, http://host:19530"
        )
    return problems


def mask_url(url: str) -> str:
    """Hide the password of a URL such as ``postgresql://user:pw@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}" if ":" in credentials else url


def _format_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = "ODS_" + "__".join(str(part).upper() for part in item["loc"]) if item["loc"] else "settings"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        shown = "" if item["loc"] == () or isinstance(value, dict) or value is None else f" (got {value!r})"
        # A check across settings (loc ()) names its variables itself: no "settings:" prefix.
        problems.append(f"{field}: {message}{shown}" if item["loc"] else message)
    return "invalid settings: " + "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and ``overrides``), with a one-line error on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_format_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()
