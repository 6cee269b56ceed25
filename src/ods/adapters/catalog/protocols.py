"""One narrow Protocol per table group of the catalog, so a consumer depends only on what it uses.

:class:`ods.adapters.catalog.Catalog` satisfies every one: mypy checks it below, and
``tests/unit/test_catalog_protocols.py`` checks that each signature is the implementation's, to the
letter, and that every public method of the catalog is in exactly one Protocol. What a method does is
documented on its implementation, in the group's module (``datasets.py``, ``models.py``, ...). The long
parameter lists are wrapped by hand (``fmt: skip``) so this file reads as a compact index of the groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from sqlalchemy import Engine

from ods.adapters.catalog import records
from ods.adapters.catalog.schema import (
    DatasetStatus,
    DocumentStatus,
    EndpointBackend,
    EndpointStatus,
    MessageRole,
    ModelStatus,
    ServerRunKind,
    ServerRunState,
)
from ods.domain.bucket_diff import SeenObject
from ods.domain.names import NameKind

if TYPE_CHECKING:
    from ods.adapters.catalog.repository import Catalog


class CatalogAdmin(Protocol):
    """The catalog as a whole: its engine, migration, names and closing (``ods init``, ``ods doctor``)."""

    @property
    def engine(self) -> Engine: ...

    def migrate(self) -> str: ...

    def close(self) -> None: ...

    def list_names(self) -> dict[NameKind, list[str]]: ...

    def for_tenant(self, tenant: str) -> Self: ...


class DatasetCatalog(Protocol):
    """Datasets, their versions and validation runs: dataset preparation, the warehouse's tables,
    training's input, ``ods datasets``."""

    def ensure_dataset(
        self, name: str, description: str | None = None, *, tenant: str | None = None,
        owner: str | None = None,
    ) -> records.DatasetRecord: ...  # fmt: skip

    def add_dataset_version(
        self, dataset_name: str, *, content_hash: str, uri: str, schema: dict[str, Any],
        profile: dict[str, Any], row_count: int, size_bytes: int, status: DatasetStatus,
        source_uri: str | None = None, source_etag: str | None = None, source_sha256: str | None = None,
        spec_hash: str | None = None, flow_run_id: str | None = None, parents: Iterable[int] = (),
        reason: str | None = None, description: str | None = None,
    ) -> records.DatasetVersionRecord: ...  # fmt: skip

    def find_dataset_version(
        self, name: str, *, source_sha256: str, spec_hash: str
    ) -> records.DatasetVersionRecord | None: ...

    def get_dataset_version(self, name: str, version: int | None = None) -> records.DatasetVersionRecord: ...

    def list_datasets(
        self, *, tags: Sequence[str] = (), include_archived: bool = True, tenant: str | None = None
    ) -> list[records.DatasetRecord]: ...

    def get_dataset(self, name: str) -> records.DatasetRecord: ...

    def dataset_bytes(self, tenant: str) -> int: ...

    def update_dataset(
        self, name: str, *, description: str | None = None, tags: Sequence[str] | None = None,
        clear_description: bool = False,
    ) -> records.DatasetRecord: ...  # fmt: skip

    def archive_dataset(self, name: str, *, now: datetime | None = None) -> records.DatasetRecord: ...

    def restore_dataset(self, name: str) -> records.DatasetRecord: ...

    def list_dataset_versions(self, name: str) -> list[records.DatasetVersionRecord]: ...

    def add_validation_run(
        self, dataset_version_id: int, *, success: bool, results: dict[str, Any],
        quarantine_uri: str | None = None,
    ) -> records.ValidationRunRecord: ...  # fmt: skip

    def validation_runs(self, dataset_version_id: int) -> list[records.ValidationRunRecord]: ...

    def latest_registered_versions(
        self, *, tenant: str | None = None
    ) -> list[records.DatasetVersionRecord]: ...


class ModelCatalog(Protocol):
    """Models and their versions: training, serving's model lookup, ``ods models``."""

    def ensure_model(
        self, name: str, description: str | None = None, *, owner: str | None = None
    ) -> records.ModelRecord: ...

    def add_model_version(
        self, model_name: str, *, trainer: str, params: dict[str, Any], metrics: dict[str, Any],
        artifact_uri: str, dataset_version_id: int | None = None, code_version: str | None = None,
        flow_run_id: str | None = None, status: ModelStatus = "registered",
    ) -> records.ModelVersionRecord: ...  # fmt: skip

    def get_model_version(self, name: str, version: int | None = None) -> records.ModelVersionRecord: ...

    def find_model_version(self, name: str, *, artifact_uri: str) -> records.ModelVersionRecord | None: ...

    def list_models(self) -> list[records.ModelRecord]: ...

    def delete_model(self, name: str) -> records.ModelRecord: ...

    def list_model_versions(self, name: str | None = None) -> list[records.ModelVersionRecord]: ...

    def training_dataset(self, model_version_id: int) -> records.DatasetVersionRecord | None: ...


class EndpointCatalog(Protocol):
    """Endpoints of served model versions: deploy and undeploy, the LLM's resolution of a model's
    active endpoint, ``ods models endpoints``."""

    def add_endpoint(
        self, model_version_id: int, *, backend: EndpointBackend, url: str,
        status: EndpointStatus = "starting",
    ) -> records.EndpointRecord: ...  # fmt: skip

    def add_served_endpoint(
        self, model_version_id: int, *, backend: EndpointBackend, url: str,
        served_model: str | None = None, pid: int | None = None, log_path: str | None = None,
        details: dict[str, Any] | None = None, status: EndpointStatus = "starting",
    ) -> records.EndpointRecord: ...  # fmt: skip

    def set_endpoint_status(
        self, endpoint_id: int, status: EndpointStatus, *, log_tail: str | None = None, url: str | None = None
    ) -> records.EndpointRecord: ...

    def update_endpoint(
        self, endpoint_id: int, *, status: EndpointStatus | None = None, served_model: str | None = None,
        pid: int | None = None, log_tail: str | None = None, details: dict[str, Any] | None = None,
    ) -> records.EndpointRecord: ...  # fmt: skip

    def get_endpoint(self, endpoint_id: int) -> records.EndpointRecord: ...

    def active_endpoint(self, model_name: str) -> records.EndpointRecord | None: ...

    def list_endpoints(
        self, model_name: str | None = None, *, model_version: int | None = None,
        status: EndpointStatus | None = None,
    ) -> list[records.EndpointRecord]: ...  # fmt: skip

    def lineage_of_endpoint(self, endpoint_id: int) -> records.EndpointLineage: ...


class KnowledgeCatalog(Protocol):
    """Knowledge bases, documents, document versions and chunks: ingestion, retrieval, citations,
    ``ods kb``."""

    def ensure_knowledge_base(
        self, name: str, *, embedding_model: str, embedding_dim: int, collection_name: str,
        source_uri: str | None = None, description: str | None = None, tenant: str | None = None,
        owner: str | None = None,
    ) -> records.KnowledgeBaseRecord: ...  # fmt: skip

    def get_knowledge_base(self, name: str) -> records.KnowledgeBaseRecord: ...

    def list_knowledge_bases(self, *, tenant: str | None = None) -> list[records.KnowledgeBaseRecord]: ...

    def record_document_version(
        self, kb: str, uri: str, sha256: str, *, etag: str | None, status: DocumentStatus,
        reason: str | None = None, chunk_count: int = 0, parser: str | None = None,
        timings: dict[str, Any] | None = None,
    ) -> records.DocumentRecord: ...  # fmt: skip

    def documents(
        self, kb: str, status: DocumentStatus | None = None, *, uris: Sequence[str] | None = None
    ) -> list[records.DocumentRecord]: ...

    def mark_document_deleted(
        self, kb: str, uri: str, *, reason: str | None = None
    ) -> records.DocumentRecord: ...

    def add_chunks(self, document_version_id: int, chunks: Iterable[records.ChunkRecord]) -> int: ...

    def record_indexed_documents(
        self, kb: str, documents: Sequence[records.IndexedDocument]
    ) -> list[records.DocumentRecord]: ...

    def replaced_versions(self, kb: str) -> list[records.ReplacedVersion]: ...

    def mark_versions_superseded(self, version_ids: Sequence[int]) -> int: ...

    def knowledge_base_counts(self, kb: str) -> records.KnowledgeBaseCounts: ...

    def indexed_chunk_ids(self, kb: str) -> dict[str, str]: ...

    def chunk_sources(self, chunk_ids: Iterable[str]) -> dict[str, records.ChunkSource]: ...


class ConversationCatalog(Protocol):
    """Conversations, their messages and citations: answers, ``ods ask``, ``ods chat``, ``ods conversations``."""

    def create_conversation(self, title: str, *, tenant: str | None = None) -> records.ConversationRecord: ...

    def add_message(
        self, conversation_id: str, role: MessageRole, content: str, *, sql: str | None = None,
        model: str | None = None, usage: dict[str, Any] | None = None,
        citations: Sequence[records.CitationRecord] = (),
    ) -> records.MessageRecord: ...  # fmt: skip

    def get_conversation(self, conversation_id: str) -> records.ConversationRecord: ...

    def list_conversations(self, *, tenant: str | None = None) -> list[records.ConversationRecord]: ...

    def delete_conversation(self, conversation_id: str) -> None: ...

    def rename_conversation(self, conversation_id: str, title: str) -> records.ConversationRecord: ...

    def knowledge_base_citations(
        self, kb: str, *, tenant: str | None = None
    ) -> list[records.KnowledgeBaseCitation]: ...

    def chunk_knowledge_bases(self, chunk_ids: Iterable[str]) -> dict[str, str]: ...


class ApiKeyCatalog(Protocol):
    """API keys of `ods serve`: ``ods keys``, the server's authentication and its bind check."""

    def add_api_key(
        self,
        name: str,
        *,
        key_hash: str,
        prefix: str,
        expires_at: datetime | None = None,
        tenant: str = "default",
        roles: Sequence[str] = ("super_admin",),
    ) -> records.ApiKeyRecord: ...

    def list_api_keys(self) -> list[records.ApiKeyRecord]: ...

    def api_keys_with_prefix(self, prefix: str) -> list[records.ApiKeyRecord]: ...

    def revoke_api_key(self, name: str) -> records.ApiKeyRecord: ...

    def touch_api_key(self, key_id: int, used_at: datetime) -> None: ...

    def count_active_api_keys(self, now: datetime) -> int: ...


@runtime_checkable
class WebhookCatalog(Protocol):
    """Webhook subscriptions, the event outbox and deliveries: the stages' events, `ods serve`'s
    dispatcher and ``/api/v1/webhooks``. Runtime-checkable: a stage handed a narrower catalog (a test's
    fake) writes no event rather than failing."""

    def add_webhook(
        self, url: str, *, events: Sequence[str], secret: str, description: str | None = None,
        tenant: str | None = None,
    ) -> records.WebhookRecord: ...  # fmt: skip

    def list_webhooks(self, *, tenant: str | None = None) -> list[records.WebhookRecord]: ...

    def get_webhook(self, webhook_id: int) -> records.WebhookRecord: ...

    def delete_webhook(self, webhook_id: int) -> records.WebhookRecord: ...

    def webhook_deliveries(
        self, webhook_id: int, *, limit: int = 50
    ) -> list[records.WebhookDeliveryRecord]: ...

    def add_outbox_event(
        self, event_type: str, data: dict[str, Any], *, event_key: str | None = None
    ) -> records.OutboxEventRecord | None: ...

    def fan_out_events(self, now: datetime, *, limit: int = 100) -> int: ...

    def claim_due_deliveries(
        self, now: datetime, *, lease_until: datetime, limit: int = 20
    ) -> list[records.DueDelivery]: ...

    def record_delivery_attempt(
        self, delivery_id: str, *, delivered: bool, status_code: int | None, error: str | None,
        next_attempt_at: datetime | None,
    ) -> records.WebhookDeliveryRecord | None: ...  # fmt: skip

    def prune_outbox(self, before: datetime) -> int: ...


class RunCatalog(Protocol):
    """Runs of `ods serve` (``ods.api.background``, ``/api/v1/runs``)."""

    def add_server_run(
        self, run_id: str, *, kind: ServerRunKind, state: ServerRunState, owner: str,
        requested_by: Sequence[str], queued_at: datetime, started_at: datetime | None = None,
        knowledge_base: str | None = None, target: str | None = None, prefect_flow_run_id: str | None = None,
        tenant: str | None = None,
    ) -> records.ServerRunRecord: ...  # fmt: skip

    def add_server_run_request(self, run_id: str, reason: str) -> records.ServerRunRecord: ...

    def start_server_run(self, run_id: str, started_at: datetime) -> records.ServerRunRecord: ...

    def finish_server_run(
        self, run_id: str, *, state: ServerRunState, finished_at: datetime,
        result: dict[str, Any] | None = None, error: str | None = None,
    ) -> records.ServerRunRecord | None: ...  # fmt: skip

    def get_server_run(self, run_id: str) -> records.ServerRunRecord: ...

    def list_server_runs(
        self, *, kind: ServerRunKind | None = None, state: ServerRunState | None = None,
        target: str | None = None, limit: int = 50, tenant: str | None = None,
    ) -> list[records.ServerRunRecord]: ...  # fmt: skip

    def unfinished_server_runs(self) -> list[records.ServerRunRecord]: ...

    def prune_server_runs(self, before: datetime) -> int: ...


class WatchCatalog(Protocol):
    """What the bucket watcher last saw of each object."""

    def watched_objects(self, bucket: str, prefix: str = "") -> list[records.WatchedObjectRecord]: ...

    def record_watched_objects(self, bucket: str, states: Iterable[SeenObject]) -> int: ...


if TYPE_CHECKING:

    def _catalog_satisfies_every_protocol(catalog: Catalog) -> None:
        """Checked by mypy only: a Catalog is accepted wherever one of the narrow Protocols is."""
        admin: CatalogAdmin = catalog
        datasets: DatasetCatalog = catalog
        models: ModelCatalog = catalog
        endpoints: EndpointCatalog = catalog
        knowledge: KnowledgeCatalog = catalog
        conversations: ConversationCatalog = catalog
        watch: WatchCatalog = catalog
        api_keys: ApiKeyCatalog = catalog
        webhooks: WebhookCatalog = catalog
        runs: RunCatalog = catalog
        del admin, datasets, models, endpoints, knowledge, conversations, watch, api_keys, webhooks, runs
