"""What changed in a watched bucket since the last look, and the deterministic ids of those changes.

Pure: the watcher (polling) and the webhook bridge (MinIO notifications) both turn an observation into
:class:`ObjectChange` values here, so the same object version always yields the same event id, the same
resource and the same labels. Prefect drops an event whose id it has already seen, and every flow an event
starts is idempotent, so a duplicate or replayed observation starts nothing new.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ods.domain.events import object_event_name, object_resource

ObjectKind = Literal["raw", "spec", "document"]
ChangeAction = Literal["created", "deleted"]

EVENT_NAMESPACE = uuid.UUID("5b0f9e0c-6d1e-4c57-9a39-0d5d3c1e7a42")
"""uuid5 namespace of object events (fixed forever: changing it would re-fire every known object)."""

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class WatchLayout:
    """Where things arrive: raw tables and their specs under ``raw_prefix``; documents under
    ``documents_prefix``, one folder per knowledge base (``docs/<kb>/...``)."""

    raw_prefix: str = "raw/"
    documents_prefix: str = "docs/"

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The prefixes to list."""
        return (self.raw_prefix, self.documents_prefix)


@dataclass(frozen=True)
class ObservedObject:
    """An object as listed now."""

    key: str
    etag: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class SeenObject(ObservedObject):
    """An object as the watcher records it: as it was listed, and ``deleted`` once it disappeared."""

    deleted: bool = False


@dataclass(frozen=True)
class ObjectRole:
    """What an object is to the platform: a raw table (with the key of its spec), a spec, or a document
    of knowledge base ``kb``. ``source_key`` is what the triggered flow reads: the raw table itself, or
    the knowledge base's folder prefix for a document."""

    kind: ObjectKind
    kb: str | None = None
    spec_key: str | None = None
    source_key: str | None = None


@dataclass(frozen=True)
class ObjectChange:
    """One object version created or deleted: becomes one ``ods.object.<action>`` event."""

    action: ChangeAction
    bucket: str
    key: str
    etag: str
    size: int | None
    role: ObjectRole
    sha256: str | None = None

    @property
    def event(self) -> str:
        """The Prefect event name."""
        return object_event_name(self.action)

    @property
    def event_id(self) -> uuid.UUID:
        """Deterministic id: the same object version and action always give the same id."""
        return object_event_id(self.bucket, self.key, self.etag, self.action)

    def resource(self) -> dict[str, str]:
        """The event's resource; its labels are what triggers in prefect.yaml match on."""
        return object_resource(self.bucket, self.key, kind=self.role.kind, kb=self.role.kb)

    def payload(self, uri_of: Callable[[str], str]) -> dict[str, Any]:
        """The event payload; ``uri_of(key)`` turns a key into what the flows read (s3://bucket/key, or a
        local path for the directory store).

        Every key is always present (None when not applicable) so trigger templates never hit an
        undefined value.
        """
        role = self.role
        spec_key = self.key if role.kind == "spec" else role.spec_key
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "kind": role.kind,
            "uri": uri_of(self.key),
            "kb": role.kb,
            "source_uri": uri_of(role.source_key) if role.source_key else None,
            "spec_key": spec_key,
            "spec_uri": uri_of(spec_key) if spec_key else None,
        }


def object_event_id(bucket: str, key: str, etag: str, action: ChangeAction) -> uuid.UUID:
    """uuid5 of (bucket, key, etag without quotes, action)."""
    return uuid.uuid5(EVENT_NAMESPACE, "\n".join((bucket, key, normalize_etag(etag), action)))


def normalize_etag(etag: str | None) -> str:
    """ETags come quoted from some APIs and bare from others; compare them bare."""
    return (etag or "").strip().strip('"')


def classify_key(key: str, layout: WatchLayout) -> ObjectRole | None:
    """The role of ``key`` under ``layout``, or None when the platform ignores it.

    Hidden files (a path part starting with '.') and folder markers (keys ending in '/') are ignored.
    """
    if key.endswith("/") or any(part.startswith(".") for part in key.split("/")):
        return None
    if layout.raw_prefix and key.startswith(layout.raw_prefix):
        name = key[len(layout.raw_prefix) :]
        if not name:
            return None
        if name.lower().endswith(SPEC_SUFFIXES):
            return ObjectRole(kind="spec")
        stem = key.rsplit(".", 1)[0] if "." in name else key
        return ObjectRole(kind="raw", spec_key=stem + ".yaml", source_key=key)
    if layout.documents_prefix and key.startswith(layout.documents_prefix):
        kb, slash, rest = key[len(layout.documents_prefix) :].partition("/")
        if not kb or not slash or not rest:
            return None
        return ObjectRole(kind="document", kb=kb, source_key=documents_prefix_of(kb, layout))
    return None


def documents_prefix_of(kb: str, layout: WatchLayout) -> str:
    """The key prefix holding knowledge base ``kb``'s documents."""
    return f"{layout.documents_prefix}{kb}/"


def diff_objects(
    bucket: str,
    listed: Iterable[ObservedObject],
    seen: Mapping[str, SeenObject],
    layout: WatchLayout,
) -> list[ObjectChange]:
    """Changes between what is listed now and what was seen, in key order (created before deleted).

    An object is created when it is new, reappears after a deletion, or has another ETag (or, when both
    sides know it, another sha256). An object seen and not deleted that is no longer listed is deleted.
    Keys the layout ignores produce nothing.
    """
    changes: list[ObjectChange] = []
    listed_keys: set[str] = set()
    for item in sorted(listed, key=lambda obj: obj.key):
        role = classify_key(item.key, layout)
        if role is None:
            continue
        listed_keys.add(item.key)
        before = seen.get(item.key)
        if before is None or before.deleted or _changed(before, item):
            changes.append(
                ObjectChange(
                    "created", bucket, item.key, normalize_etag(item.etag), item.size, role, item.sha256
                )
            )
    for key in sorted(seen):
        before = seen[key]
        role = classify_key(key, layout)
        if role is None or before.deleted or key in listed_keys:
            continue
        changes.append(
            ObjectChange(
                "deleted", bucket, key, normalize_etag(before.etag), before.size, role, before.sha256
            )
        )
    return changes


def _changed(before: SeenObject, now: ObservedObject) -> bool:
    if before.sha256 and now.sha256:
        return before.sha256 != now.sha256
    return normalize_etag(before.etag) != normalize_etag(now.etag)
