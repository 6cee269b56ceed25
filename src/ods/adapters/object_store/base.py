"""The ObjectStore protocol: everything the platform keeps as bytes goes through it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

import pyarrow.fs

from ods.errors import OdsError


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object.

    ``etag`` is opaque (a multipart ETag is not an MD5): use it only as a cheap change hint.
    ``sha256`` is our own content hash, kept as object metadata when the platform wrote the object;
    it is ``None`` for objects written by someone else (compute it when identity matters).
    """

    key: str
    size: int
    etag: str
    sha256: str | None
    last_modified: datetime | None
    content_type: str | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of objects addressed by validated, '/'-separated keys."""

    @property
    def kind(self) -> str:
        """'local' or 'minio'."""
        ...

    @property
    def location(self) -> str:
        """A URI naming the store itself: ``file:///root/`` or ``s3://bucket/``."""
        ...

    def uri(self, key: str) -> str:
        """A URI naming the object, e.g. ``file:///.../key`` or ``s3://bucket/key``."""
        ...

    def ensure_ready(self) -> None:
        """Create the root directory or bucket if missing (idempotent)."""
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key`` (atomically replacing any previous object)."""
        ...

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        """Store the file at ``path`` under ``key``."""
        ...

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str | None = None) -> ObjectInfo:
        """Store everything readable from ``stream`` under ``key``."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole object. Raises ObjectNotFoundError."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object (close it, or use ``with``)."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag, sha256 and time of the object. Raises ObjectNotFoundError."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, recursively, sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def presigned_url(
        self, key: str, *, expires: timedelta = timedelta(hours=1), method: Literal["GET", "PUT"] = "GET"
    ) -> str:
        """A URL that grants time-limited access to the object without credentials."""
        ...

    def filesystem(self) -> pyarrow.fs.FileSystem:
        """A pyarrow filesystem rooted at the store: its paths are object keys (for Parquet I/O)."""
        ...


def key_of(store: ObjectStore, uri: str) -> str:
    """The object key behind a URI of ``store``."""
    if not uri.startswith(store.location):
        raise OdsError(f"{uri} is not in the configured object store {store.location}")
    return uri.removeprefix(store.location)
