"""The catalog's tables: one lineage graph from raw file to model endpoint and from document to citation.

Every arrow (dataset version → model version → endpoint, document version → chunk → citation) is a
foreign key. Enumerated columns are strings guarded by CHECK constraints (portable, easy to extend by a
migration); JSON columns are JSONB on PostgreSQL; timestamps are timezone-aware UTC on every backend.
Constraint names come from the naming convention, so migrations can address them by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

DatasetStatus = Literal["registered", "rejected"]
ModelStatus = Literal["registered", "rejected"]
EndpointBackend = Literal["vllm", "transformers", "openai"]
EndpointStatus = Literal["starting", "active", "failed", "stopped"]
DocumentStatus = Literal["indexed", "quarantined", "deleted"]
DocumentVersionStatus = Literal["indexed", "quarantined", "deleted", "superseded"]
"""A version's status; ``superseded``: a newer version of the document was indexed and this one's chunks
were deleted from the index (migration 0004). Its chunk rows stay, so old citations still resolve."""
MessageRole = Literal["user", "assistant", "system"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDocument = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""A JSON object column: JSONB on PostgreSQL, JSON text elsewhere; Python ``None`` is SQL NULL."""

JSONList = JSON().with_variant(JSONB(), "postgresql")
"""A JSON array column (never NULL): JSONB on PostgreSQL, JSON text elsewhere."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of time the catalog stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite keeps no zone, so values are normalised to UTC on the way in and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"catalog timestamps must be timezone-aware, got naive {value.isoformat()}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def one_of(column: str, values: Any) -> CheckConstraint:
    """A CHECK constraint named ``column`` keeping ``column`` within the members of a ``Literal``."""
    allowed = ", ".join(f"'{value}'" for value in get_args(values))
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention and the catalog's column types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
    }


class NamedRow(Base):
    """The columns of a row known by a unique name (datasets, models, knowledge bases): the catalog's
    lookups by name (and their "no such name; known names: ..." errors) are written once against it."""

    __abstract__ = True

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        """Names are unique within a tenant (migration 0015): two tenants may each hold ``sales``."""
        return (UniqueConstraint("tenant", "name"),)

    # Inherited columns would come last; ``sort_order`` keeps the key and the name first, as in 0001.
    id: Mapped[int] = mapped_column(primary_key=True, sort_order=-2)
    name: Mapped[str] = mapped_column(String(200), sort_order=-1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tenant: Mapped[str] = mapped_column(
        String(63), default="default", server_default=text("'default'"), index=True
    )
    """The tenant the row belongs to (migration 0012); a name is unique within it (migration 0015)."""
    owner: Mapped[str | None] = mapped_column(String(200))
    """The subject of the principal that created it (migration 0014); NULL for rows made before owners
    were recorded and for rows the CLI or a flow made: only admins edit or delete those."""


class VersionedRow(NamedRow):
    """A named row with a description whose content lives in numbered versions (datasets, models)."""

    __abstract__ = True

    description: Mapped[str | None] = mapped_column(Text)


class VersionRow(Base):
    """The columns every numbered version (of a dataset or a model) has: read by one generic getter."""

    __abstract__ = True

    id: Mapped[int] = mapped_column(primary_key=True, sort_order=-2)
    version: Mapped[int] = mapped_column(sort_order=-1)
    status: Mapped[str] = mapped_column(String(16))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(VersionedRow):
    """A named dataset; its content lives in immutable versions."""

    __tablename__ = "datasets"

    tags: Mapped[list[str]] = mapped_column(JSONList, default=list, server_default=text("'[]'"))
    """Short labels a person gives the dataset (``PUT /api/v1/datasets/{name}``), filtered on by lists."""
    archived_at: Mapped[datetime | None]
    """When the dataset was archived (hidden from lists, versions and bytes kept); NULL while live."""

    versions: Mapped[list[DatasetVersion]] = relationship(back_populates="dataset", passive_deletes=True)


dataset_version_parents = Table(
    "dataset_version_parents",
    Base.metadata,
    Column(
        "child_version_id",
        ForeignKey("dataset_versions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "parent_version_id",
        ForeignKey("dataset_versions.id", ondelete="RESTRICT"),
        primary_key=True,
        index=True,
    ),
)
"""Derived datasets: which versions a version was computed from."""


class DatasetVersion(VersionRow):
    """One immutable, content-addressed version of a dataset, with its lineage back to the raw file."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version"),
        UniqueConstraint("dataset_id", "content_hash"),
        one_of("status", DatasetStatus),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)
    schema: Mapped[dict[str, Any]]
    profile: Mapped[dict[str, Any]]
    row_count: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    source_uri: Mapped[str | None] = mapped_column(Text)
    source_etag: Mapped[str | None] = mapped_column(String(200))
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    spec_hash: Mapped[str | None] = mapped_column(String(64))

    dataset: Mapped[Dataset] = relationship(back_populates="versions")
    parents: Mapped[list[DatasetVersion]] = relationship(
        secondary=dataset_version_parents,
        primaryjoin=lambda: DatasetVersion.id == dataset_version_parents.c.child_version_id,
        secondaryjoin=lambda: DatasetVersion.id == dataset_version_parents.c.parent_version_id,
    )


class ValidationRun(Base):
    """The outcome of one quality-gate run over a dataset version."""

    __tablename__ = "validation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    success: Mapped[bool] = mapped_column(Boolean)
    results: Mapped[dict[str, Any]]
    quarantine_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(VersionedRow):
    """A named model; trained artifacts are its versions."""

    __tablename__ = "models"


class ModelVersion(VersionRow):
    """One trained model artifact and the dataset version it was trained on."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        one_of("status", ModelStatus),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    trainer: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    artifact_uri: Mapped[str] = mapped_column(Text)
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="RESTRICT"), index=True
    )
    code_version: Mapped[str | None] = mapped_column(String(100))

    model: Mapped[Model] = relationship()


class Endpoint(Base):
    """A served model version behind an OpenAI-compatible URL."""

    __tablename__ = "endpoints"
    __table_args__ = (one_of("backend", EndpointBackend), one_of("status", EndpointStatus))

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    backend: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    log_tail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Migration 0002: what callers and the serving flows need to reach and manage the server.
    served_model: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None]
    log_path: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)


class KnowledgeBase(NamedRow):
    """A set of documents indexed into one vector collection with one embedding model."""

    __tablename__ = "knowledge_bases"

    source_uri: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    embedding_model: Mapped[str] = mapped_column(String(200))
    embedding_dim: Mapped[int]
    collection_name: Mapped[str] = mapped_column(String(255), unique=True)


class Document(Base):
    """A document of a knowledge base, by URI; ``current_version_id`` is the version last recorded."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("kb_id", "uri"), one_of("status", DocumentStatus))

    id: Mapped[int] = mapped_column(primary_key=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("document_versions.id", ondelete="SET NULL", use_alter=True), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DocumentVersion(Base):
    """One content of a document (by sha256) and what indexing it produced."""

    __tablename__ = "document_versions"
    __table_args__ = (UniqueConstraint("document_id", "sha256"), one_of("status", DocumentVersionStatus))

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(default=0)
    parser: Mapped[str | None] = mapped_column(String(100))
    timings: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Chunk(Base):
    """A chunk of a document version; ``id`` is the content-derived id also used as the Milvus key."""

    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_version_id", "chunk_index"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    document_version_id: Mapped[int] = mapped_column(ForeignKey("document_versions.id", ondelete="CASCADE"))
    chunk_index: Mapped[int]
    page: Mapped[int | None]
    heading: Mapped[str | None] = mapped_column(Text)
    char_count: Mapped[int]


class Conversation(Base):
    """A chat history; ``id`` is a uuid4 hex string."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    tenant: Mapped[str] = mapped_column(
        String(63), default="default", server_default=text("'default'"), index=True
    )

    messages: Mapped[list[Message]] = relationship(
        order_by=lambda: Message.id, passive_deletes=True, cascade="all, delete-orphan"
    )


class Message(Base):
    """One turn of a conversation, with the SQL it ran and the sources it cited."""

    __tablename__ = "messages"
    __table_args__ = (one_of("role", MessageRole),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    sql: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    usage: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    citations: Mapped[list[Citation]] = relationship(
        order_by=lambda: (Citation.marker, Citation.id), passive_deletes=True, cascade="all, delete-orphan"
    )


class Citation(Base):
    """A numbered source of an answer: a chunk (and its document version) or a dataset version.

    The source links survive their targets being pruned (SET NULL), so history stays readable.
    """

    __tablename__ = "citations"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    marker: Mapped[int]
    chunk_id: Mapped[str | None] = mapped_column(ForeignKey("chunks.id", ondelete="SET NULL"), index=True)
    document_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("document_versions.id", ondelete="SET NULL"), index=True
    )
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), index=True
    )


class WatchedObject(Base):
    """An object the bucket watcher has seen (migration 0003): its last recorded version, by ETag/sha256.

    One row per (bucket, key): concurrent watchers upsert the same row instead of recording it twice.
    ``deleted_at`` is set while the object is gone; it is cleared when the key reappears.
    """

    __tablename__ = "watched_objects"
    __table_args__ = (UniqueConstraint("bucket", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    etag: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class ApiKey(Base):
    """An API key of `ods serve` (migration 0005): its SHA-256 and display prefix, never the key itself;
    the service account's tenant and roles (migration 0010).

    A revoked key keeps its row (and its name) so the list shows what was revoked and when; lookups go by
    the prefix, and the digests of the rows found are compared in constant time.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    tenant: Mapped[str] = mapped_column(String(63), default="default", server_default=text("'default'"))
    roles: Mapped[list[str]] = mapped_column(JSONList, server_default=text("'[\"super_admin\"]'"))


DeliveryStatus = Literal["pending", "delivered", "expired"]
"""A webhook delivery's state: ``pending`` until a receiver answers 2xx (``delivered``) or its retries run
past ODS_API__WEBHOOKS__EXPIRE_S (``expired``)."""


class Webhook(Base):
    """A subscription of `ods serve`'s webhooks (migration 0008): where to POST which events, signed with
    ``secret`` (kept so it can sign; the API returns it once, at creation)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    secret: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tenant: Mapped[str] = mapped_column(
        String(63), default="default", server_default=text("'default'"), index=True
    )


class OutboxEvent(Base):
    """An event the platform wrote for the webhooks (migration 0008): its type, data and an optional key
    that makes writing it again a no-op; ``fanned_out_at`` is set once it became one delivery per
    matching subscription."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    fanned_out_at: Mapped[datetime | None] = mapped_column(index=True)
    tenant: Mapped[str] = mapped_column(
        String(63), default="default", server_default=text("'default'"), index=True
    )
    """The tenant whose resource the event is about (migration 0015): only its webhooks receive it."""


class WebhookDelivery(Base):
    """One event for one subscription: its id is the ``X-ODS-Delivery`` header, the same on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "event_id"), one_of("status", DeliveryStatus))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("event_outbox.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


ServerRunKind = Literal["ingest", "deploy", "undeploy", "prepare"]
ServerRunState = Literal["queued", "running", "completed", "failed", "interrupted"]
"""A server run's state; ``interrupted``: the server that ran it stopped (killed, crashed) before it ended,
and the next server to start on this catalog marked it so (migration 0009)."""


class ServerRun(Base):
    """A run `ods serve` started (migration 0009): an ingest after an upload, a dataset's prepare, a deploy
    or an undeploy, run in the server's background or as a Prefect flow run (``prefect_flow_run_id``).

    ``owner`` names the server process that runs an in-server run (``host:pid``), so a server starting on
    the same host can tell the runs a dead process left unfinished from those of a live one."""

    __tablename__ = "server_runs"
    __table_args__ = (one_of("kind", ServerRunKind), one_of("state", ServerRunState))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    knowledge_base: Mapped[str | None] = mapped_column(String(200))
    target: Mapped[str | None] = mapped_column(String(200))
    requested_by: Mapped[list[str]] = mapped_column(JSONList)
    owner: Mapped[str] = mapped_column(String(300))
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    tenant: Mapped[str] = mapped_column(
        String(63), default="default", server_default=text("'default'"), index=True
    )
    """The tenant the run works for (migration 0015): its target is that tenant's resource."""


AuditOutcome = Literal["allowed", "refused", "failed"]
"""How an audited request ended: ``allowed`` (answered 2xx/3xx), ``refused`` (401, 403 or 429) or
``failed`` (any other 4xx or a 5xx)."""


class AuditEntry(Base):
    """One row of the audit log (migration 0011): append-only, never a token, key or secret.

    ``action`` names what happened (``create``, ``update``, ``delete``, ``login``, ``refused``, ``sql``,
    ``question``), ``resource`` the route template with its path parameters filled in."""

    __tablename__ = "audit_log"
    __table_args__ = (one_of("outcome", AuditOutcome),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    tenant: Mapped[str | None] = mapped_column(String(63), index=True)
    subject: Mapped[str | None] = mapped_column(String(200), index=True)
    roles: Mapped[list[str]] = mapped_column(JSONList)
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None]
    client: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)


LoginSessionKind = Literal["pending", "active"]
"""A console login's stage: ``pending`` between ``/auth/login`` and ``/auth/callback``, ``active`` once
signed in (migration 0013)."""


class LoginSession(Base):
    """A browser's login to the console (migration 0013): ``id`` is the SHA-256 of the cookie's random
    value and ``sealed`` the state or tokens encrypted with a key derived from that value, so the row
    alone neither opens the session nor shows a token."""

    __tablename__ = "login_sessions"
    __table_args__ = (one_of("kind", LoginSessionKind),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str | None] = mapped_column(String(63))
    subject: Mapped[str | None] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    sealed: Mapped[str] = mapped_column(Text)
