"""Stages of bucket watching: list the watched prefixes, diff against the catalog, emit, then record.

The order matters: events are emitted before what was seen is recorded, so a watcher killed in between
emits the same events (same deterministic ids) again on its next run instead of losing them. Prefect
drops an event id it has already seen and every flow an event starts is idempotent, so the repeat is
harmless. Two watchers running at once emit the same ids and upsert the same catalog rows (unique
bucket + key), so concurrency is harmless too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from ods.adapters.catalog import WatchCatalog
from ods.adapters.object_store import ObjectStore
from ods.domain.bucket_diff import (
    ObjectChange,
    ObservedObject,
    SeenObject,
    WatchLayout,
    diff_objects,
)
from ods.errors import OdsError
from ods.settings import Settings
from ods.stages.ingest import IngestSummary

LOCAL_BUCKET = "local"
"""The bucket name events carry for the local (directory) object store."""


@dataclass(frozen=True)
class ObjectEvent:
    """A Prefect event ready to emit (name, primary resource, payload, deterministic id)."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]
    id: uuid.UUID


class EventEmitter(Protocol):
    """Sends one event (Prefect's ``emit_event`` in production, a list in unit tests)."""

    def __call__(self, event: ObjectEvent) -> None: ...


def emit_with_prefect(event: ObjectEvent) -> None:
    """Emit ``event`` through Prefect's events client, keeping its id (imported lazily: no Prefect at import)."""
    from prefect.events import emit_event

    emit_event(event=event.event, resource=event.resource, payload=event.payload, id=event.id)


def watch_layout(settings: Settings) -> WatchLayout:
    """The watched prefixes from settings."""
    return WatchLayout(raw_prefix=settings.watch.raw_prefix, documents_prefix=settings.watch.documents_prefix)


def bucket_of(store: ObjectStore) -> str:
    """The bucket name events carry: the S3 bucket, or ``local`` for the directory store."""
    bucket = getattr(store, "bucket", None)
    return bucket if isinstance(bucket, str) else LOCAL_BUCKET


def uri_resolver(store: ObjectStore) -> Callable[[str], str]:
    """Key (or key prefix) → what the flows accept as a source: ``s3://bucket/key`` or a local path."""
    root = getattr(store, "root", None)
    if store.kind == "local" and root is not None:
        return lambda key: str(root / key) + ("/" if key.endswith("/") else "")
    bucket = bucket_of(store)
    return lambda key: s3_uri(bucket, key)


def s3_uri(bucket: str, key: str) -> str:
    """``s3://bucket/key``."""
    return f"s3://{bucket}/{key}"


def list_watched_objects(store: ObjectStore, layout: WatchLayout) -> list[ObservedObject]:
    """Every object under the watched prefixes, as listed now."""
    return [
        ObservedObject(key=info.key, etag=info.etag, size=info.size, sha256=info.sha256)
        for prefix in layout.prefixes
        for info in store.list(prefix)
    ]


def load_seen_objects(catalog: WatchCatalog, bucket: str, layout: WatchLayout) -> dict[str, SeenObject]:
    """What the watcher recorded under the watched prefixes, by key."""
    return {
        record.key: SeenObject(
            key=record.key, etag=record.etag, sha256=record.sha256, size=record.size, deleted=record.deleted
        )
        for prefix in layout.prefixes
        for record in catalog.watched_objects(bucket, prefix)
    }


def plan_bucket_changes(store: ObjectStore, catalog: WatchCatalog, layout: WatchLayout) -> list[ObjectChange]:
    """What changed in the watched prefixes since the last recorded look."""
    bucket = bucket_of(store)
    return diff_objects(
        bucket, list_watched_objects(store, layout), load_seen_objects(catalog, bucket, layout), layout
    )


def object_event(change: ObjectChange, uri_of: Callable[[str], str]) -> ObjectEvent:
    """The ``ods.object.created|deleted`` event of ``change``."""
    return ObjectEvent(
        event=change.event, resource=change.resource(), payload=change.payload(uri_of), id=change.event_id
    )


class EmittedEvent(BaseModel):
    """One ``ods.object.*`` event a watcher emitted."""

    model_config = ConfigDict(frozen=True)

    event: str = Field(description="ods.object.created or ods.object.deleted.")
    key: str = Field(description="The object's key in the bucket.")
    id: str = Field(description="The event's deterministic id (a repeat is the same event).")

    @classmethod
    def of(cls, event: ObjectEvent) -> EmittedEvent:
        return cls(event=event.event, key=event.payload["key"], id=str(event.id))


class WatchResult(BaseModel):
    """What one watch-bucket run did: the events it emitted and the catalog rows it recorded."""

    model_config = ConfigDict(frozen=True)

    events: list[EmittedEvent]
    recorded: int = Field(description="Objects recorded as seen (so the next run does not emit them).")


def emit_object_events(
    changes: Iterable[ObjectChange], uri_of: Callable[[str], str], emit: EventEmitter
) -> list[ObjectEvent]:
    """Emit one event per change, in order; returns what was emitted."""
    events = [object_event(change, uri_of) for change in changes]
    for event in events:
        emit(event)
    return events


def record_bucket_changes(catalog: WatchCatalog, bucket: str, changes: Iterable[ObjectChange]) -> int:
    """Record the changes as seen (after their events went out); returns the rows written."""
    states = [
        SeenObject(
            key=change.key,
            etag=change.etag,
            size=change.size or 0,
            sha256=change.sha256,
            deleted=change.action == "deleted",
        )
        for change in changes
    ]
    return catalog.record_watched_objects(bucket, states) if states else 0


class KnowledgeBaseSyncError(OdsError):
    """Some knowledge bases could not be brought in line with their sources (the others were)."""


@dataclass(frozen=True)
class KnowledgeBaseSource:
    """A knowledge base and the source the catalog recorded for it (None: never ingested from one)."""

    kb: str
    source: str | None


class KnowledgeBaseSync(BaseModel):
    """How syncing one knowledge base went. As JSON, a synced one is ``{"kb", "status": "synced", ...}``
    with its ingest summary's fields inline, a failed one ``{"kb", "status": "failed", "error"}``."""

    model_config = ConfigDict(frozen=True)

    kb: str
    status: Literal["synced", "failed"]
    error: str | None = Field(default=None, description="Why a failed knowledge base did not sync.")
    ingest: IngestSummary | None = Field(default=None, description="What a synced one's ingest did.")

    @model_serializer(mode="wrap")
    def _inline_ingest(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        ingest = data.pop("ingest", None)
        if ingest is None:
            return data
        data.pop("error", None)
        return {**data, **ingest}

    @model_validator(mode="before")
    @classmethod
    def _nest_ingest(cls, data: Any) -> Any:
        """Read the JSON form back: a synced one's inline ingest fields become ``ingest`` again."""
        if isinstance(data, dict) and "ingest" not in data and "source" in data:
            return {"kb": data["kb"], "status": data["status"], "ingest": data}
        return data


class KnowledgeBaseSyncReport(BaseModel):
    """What one sync-knowledge-bases run did, knowledge base by knowledge base."""

    model_config = ConfigDict(frozen=True)

    synced: int = Field(description="Knowledge bases looked at (a failed one would have failed the run).")
    knowledge_bases: list[KnowledgeBaseSync]


def sync_failure_message(results: Iterable[KnowledgeBaseSync]) -> str | None:
    """The error naming every knowledge base that failed to sync and why, or None when all synced."""
    failed = [f"{result.kb} ({result.error or 'failed'})" for result in results if result.status != "synced"]
    if not failed:
        return None
    return (
        f"{len(failed)} knowledge base(s) failed to sync: "
        + "; ".join(failed)
        + ". The others were synced; fix "
        "the source (or re-ingest with `ods kb ingest SOURCE KB`) and run sync-knowledge-bases again."
    )
