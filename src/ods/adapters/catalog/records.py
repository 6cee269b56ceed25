"""What the catalog returns: small frozen records, detached from any database session.

Records hold plain values (JSON columns as dicts), so callers never trigger a lazy load after the session
that produced them has closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset, with its newest registered version number and how many versions it has."""

    id: int
    name: str
    description: str | None
    created_at: datetime
    latest_version: int | None
    version_count: int
    tags: tuple[str, ...] = ()
    """Short labels, sorted (migration 0007)."""
    archived_at: datetime | None = None
    """When the dataset was archived (hidden from lists, versions kept); None while it is live."""
    tenant: str = "default"
    """The tenant it belongs to (migration 0012)."""
    owner: str | None = None
    """The subject that created it (migration 0014); None when unknown (only admins may change it)."""


@dataclass(frozen=True)
class DatasetVersionRecord:
    """One immutable dataset version and its lineage."""

    id: int
    dataset_id: int
    dataset_name: str
    version: int
    content_hash: str
    uri: str
    schema: dict[str, Any]
    profile: dict[str, Any]
    row_count: int
    size_bytes: int
    status: str
    reason: str | None
    source_uri: str | None
    source_etag: str | None
    source_sha256: str | None
    spec_hash: str | None
    flow_run_id: str | None
    parent_ids: tuple[int, ...]
    created_at: datetime


@dataclass(frozen=True)
class ValidationRunRecord:
    """The outcome of one quality-gate run."""

    id: int
    dataset_version_id: int
    success: bool
    results: dict[str, Any]
    quarantine_uri: str | None
    created_at: datetime


@dataclass(frozen=True)
class ModelRecord:
    """A named model."""

    id: int
    name: str
    description: str | None
    created_at: datetime
    tenant: str = "default"
    """The tenant it belongs to (migration 0012)."""
    owner: str | None = None
    """The subject that created it (migration 0014); None when unknown (only admins may change it)."""


@dataclass(frozen=True)
class ModelVersionRecord:
    """One trained model artifact and what it was trained on."""

    id: int
    model_id: int
    model_name: str
    version: int
    trainer: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifact_uri: str
    dataset_version_id: int | None
    code_version: str | None
    flow_run_id: str | None
    status: str
    created_at: datetime


@dataclass(frozen=True)
class EndpointRecord:
    """A served model version."""

    id: int
    model_version_id: int
    model_name: str
    model_version: int
    backend: str
    url: str
    status: str
    log_tail: str | None
    created_at: datetime
    updated_at: datetime
    served_model: str | None = None
    """The model id requests must send (``/v1/models``); ``None``: the catalog model name."""
    pid: int | None = None
    log_path: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KnowledgeBaseRecord:
    """A knowledge base and the vector collection (embedding model, dimension) holding it."""

    id: int
    name: str
    source_uri: str | None
    embedding_model: str
    embedding_dim: int
    collection_name: str
    created_at: datetime
    description: str | None = None
    tenant: str = "default"
    """The tenant it belongs to (migration 0012)."""
    owner: str | None = None
    """The subject that created it (migration 0014); None when unknown (only admins may change it)."""


@dataclass(frozen=True)
class DocumentRecord:
    """A document of a knowledge base with its current (last recorded) version."""

    id: int
    kb_name: str
    uri: str
    status: str
    version_id: int | None
    sha256: str | None
    etag: str | None
    reason: str | None
    chunk_count: int
    parser: str | None
    timings: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk row: ``id`` is the content-derived id shared with the vector index."""

    id: str
    chunk_index: int
    char_count: int
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True)
class IndexedDocument:
    """A document version whose chunks are in the vector index, to record with them in the catalog."""

    uri: str
    sha256: str
    etag: str | None
    parser: str | None
    chunks: Sequence[ChunkRecord]


@dataclass(frozen=True)
class ReplacedVersion:
    """A document version still ``indexed`` although it is not its document's current version: its chunks
    may still be in the index (its document's new version was quarantined, or a run stopped between the
    index and the catalog). ``current_sha256``/``current_status``: the document's current version."""

    version_id: int
    uri: str
    sha256: str
    current_sha256: str | None
    current_status: str


@dataclass(frozen=True)
class KnowledgeBaseCounts:
    """What the catalog holds for a knowledge base: documents by status, versions by status, and the
    chunk rows of ``indexed`` versions (what its collection in the index should hold)."""

    documents: dict[str, int]
    versions: dict[str, int]
    indexed_chunks: int


@dataclass(frozen=True)
class CitationRecord:
    """Source ``[marker]`` of an answer: a chunk, a document version and/or a dataset version."""

    marker: int
    chunk_id: str | None = None
    document_version_id: int | None = None
    dataset_version_id: int | None = None


@dataclass(frozen=True)
class ChunkSource:
    """A chunk resolved to its document: what a citation of that chunk points at."""

    chunk_id: str
    document_version_id: int
    doc_uri: str
    doc_sha256: str
    chunk_index: int
    page: int | None
    heading: str | None


@dataclass(frozen=True)
class KnowledgeBaseCitation:
    """One source of an answer that cites a document of a knowledge base: which conversation, which
    document (and version) and, while the chunk is in the catalog, which chunk."""

    conversation_id: str
    conversation_title: str
    message_id: int
    marker: int
    document_id: int
    document_uri: str
    document_version_id: int
    chunk_id: str | None
    chunk_index: int | None
    page: int | None
    heading: str | None


@dataclass(frozen=True)
class MessageRecord:
    """One turn of a conversation."""

    id: int
    conversation_id: str
    role: str
    content: str
    sql: str | None
    model: str | None
    usage: dict[str, Any] | None
    created_at: datetime
    citations: tuple[CitationRecord, ...]


@dataclass(frozen=True)
class ConversationRecord:
    """A conversation; ``messages`` is filled by :meth:`Catalog.get_conversation` only."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: tuple[MessageRecord, ...] = ()
    tenant: str = "default"
    """The tenant it belongs to (migration 0012)."""


@dataclass(frozen=True)
class EndpointLineage:
    """The chain behind an endpoint: model version, the dataset version it learnt from, and its source."""

    endpoint_id: int
    endpoint_url: str
    endpoint_status: str
    backend: str
    model_name: str
    model_version: int
    model_version_id: int
    artifact_uri: str
    dataset_name: str | None
    dataset_version: int | None
    dataset_version_id: int | None
    content_hash: str | None
    dataset_uri: str | None
    source_uri: str | None
    source_etag: str | None


@dataclass(frozen=True)
class WatchedObjectRecord:
    """An object the bucket watcher has seen, as last recorded (``deleted`` once it disappeared)."""

    bucket: str
    key: str
    etag: str
    sha256: str | None
    size: int
    first_seen: datetime
    last_seen: datetime
    deleted: bool


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: its name, display prefix and digest, when it was made, used, revoked or
    expires (``None``: never), and the tenant and roles of the service account it is."""

    id: int
    name: str
    prefix: str
    key_hash: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    tenant: str = "default"
    roles: tuple[str, ...] = ("super_admin",)


@dataclass(frozen=True)
class WebhookRecord:
    """A webhook subscription; ``secret`` signs its deliveries and is left out of the repr (and so of logs)."""

    id: int
    url: str
    events: tuple[str, ...]
    description: str | None
    created_at: datetime
    secret: str = field(repr=False)
    tenant: str = "default"
    """The tenant it belongs to (migration 0012)."""


@dataclass(frozen=True)
class OutboxEventRecord:
    """An event written for the webhooks: its type, data, when it happened and whether it was fanned out."""

    id: int
    event_key: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime
    fanned_out_at: datetime | None


@dataclass(frozen=True)
class WebhookDeliveryRecord:
    """One event for one subscription and how its attempts went (``next_attempt_at``: None once delivered
    or expired)."""

    id: str
    webhook_id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DueDelivery:
    """A delivery claimed for one attempt: where to send it, the secret that signs it, and its event."""

    delivery: WebhookDeliveryRecord
    url: str
    event_created_at: datetime
    event_data: dict[str, Any]
    secret: str = field(repr=False)


@dataclass(frozen=True)
class ServerRunRecord:
    """A run `ods serve` started, as the catalog holds it (migration 0009)."""

    id: str
    kind: str
    state: str
    knowledge_base: str | None
    target: str | None
    requested_by: tuple[str, ...]
    owner: str
    """The server process running it in its background (``host:pid``)."""
    prefect_flow_run_id: str | None
    """The Prefect flow run doing the work, when a deployment was started instead (its state is Prefect's)."""
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    tenant: str = "default"
    """The tenant the run works for (migration 0015): its knowledge base or target is that tenant's."""
