"""Where a knowledge base's documents come from: a local folder or an object-store prefix.

Each document's identity is its URI (``file:///abs/path`` or ``s3://bucket/key``); the listing gives a
cheap change hint (the object's ETag, or size and mtime for a file) so unchanged documents are never read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from ods.adapters.object_store import ObjectStore
from ods.domain.object_keys import validate_object_key
from ods.domain.sync_plan import ListedDocument
from ods.errors import OdsError


class DocumentSourceError(OdsError):
    """The document source cannot be listed or read."""


class DocumentSource:
    """A local folder or an ``s3://bucket/prefix`` of the configured object store."""

    def __init__(self, uri: str, store: ObjectStore | None = None) -> None:
        self.uri = uri
        self._store = store
        if uri.startswith("s3://"):
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            if store is None or store.location != f"s3://{bucket}/":
                where = store.location if store is not None else "no object store"
                raise DocumentSourceError(
                    f"{uri} is not in the configured object store ({where}); set ODS_OBJECT_STORE__BUCKET"
                )
            self._prefix: str | None = validate_object_key(prefix, allow_prefix=True)
            self._root: Path | None = None
        else:
            root = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri).expanduser()
            if not root.is_dir():
                raise DocumentSourceError(
                    f"cannot list {root}: not a directory; pass a folder or s3://bucket/prefix"
                )
            self._root = root.resolve()
            self._prefix = None

    def list(self) -> Iterator[ListedDocument]:
        """Every document under the source, sorted by URI; hidden files and folders are skipped."""
        if self._root is not None:
            yield from self._list_folder(self._root)
            return
        assert self._store is not None and self._prefix is not None
        for info in self._store.list(self._prefix):
            if any(part.startswith(".") for part in info.key.split("/")):
                continue
            yield ListedDocument(uri=self._store.uri(info.key), etag=info.etag, size=info.size)

    def read(self, uri: str) -> bytes:
        """The bytes of one listed document."""
        if self._root is not None:
            path = Path(unquote(urlparse(uri).path)).resolve()
            if not path.is_relative_to(self._root):
                raise DocumentSourceError(f"{uri} is outside the source folder {self._root}")
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise DocumentSourceError(f"{uri} disappeared while the run was reading it") from None
        assert self._store is not None
        return self._store.get_bytes(uri.removeprefix(self._store.location))

    def _list_folder(self, root: Path) -> Iterator[ListedDocument]:
        found = []
        for directory, subdirectories, files in os.walk(root, followlinks=False):
            subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
            for name in files:
                path = Path(directory) / name
                if name.startswith(".") or path.is_symlink():
                    continue
                status = path.stat()
                found.append(
                    ListedDocument(
                        uri=path.as_uri(),
                        etag=f"{status.st_size:x}-{status.st_mtime_ns:x}",
                        size=status.st_size,
                    )
                )
        yield from sorted(found, key=lambda document: document.uri)
