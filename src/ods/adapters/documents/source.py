"""Where a knowledge base's documents come from: a local folder or an object-store prefix.

Each document's identity is its URI (``file:///abs/path`` or ``s3://bucket/key``); the listing gives a
cheap change hint (the object's ETag, or size and mtime for a file) so unchanged documents are never read.
A name that cannot be used (a control character, bytes that are not UTF-8, too long, or an object key the
store refuses) does not stop the listing: the document is listed with its ``name_problem`` under a URI
made of the name's printable form, and ingestion quarantines it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from ods.adapters.object_store import ObjectStore
from ods.domain.object_keys import document_name_problem, printable_name, validate_object_key
from ods.domain.sync_plan import ListedDocument
from ods.errors import InvalidObjectKeyError, OdsError


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
            problem = _object_key_problem(info.key)
            if problem is not None:
                uri = self._store.location + printable_name(info.key)
                yield ListedDocument(uri=uri, etag=info.etag, size=info.size, name_problem=problem)
                continue
            yield ListedDocument(uri=self._store.uri(info.key), etag=info.etag, size=info.size)

    def read(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of one listed document; with ``max_bytes``, at most ``max_bytes + 1`` of them.

        A result longer than ``max_bytes`` means the document is over that limit, whatever its listing said
        (a file that grew, a server that reports a wrong size): it is never read whole.
        """
        wanted = -1 if max_bytes is None else max_bytes + 1
        if self._root is not None:
            path = Path(unquote(urlparse(uri).path)).resolve()
            if not path.is_relative_to(self._root):
                raise DocumentSourceError(f"{uri} is outside the source folder {self._root}")
            try:
                with path.open("rb") as file:
                    return file.read(wanted)
            except FileNotFoundError:
                raise DocumentSourceError(f"{uri} disappeared while the run was reading it") from None
        assert self._store is not None
        with self._store.open(uri.removeprefix(self._store.location)) as stream:
            return stream.read(wanted)

    def _list_folder(self, root: Path) -> Iterator[ListedDocument]:
        found = []
        for directory, subdirectories, files in os.walk(root, followlinks=False):
            subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
            for name in files:
                path = Path(directory) / name
                if name.startswith(".") or path.is_symlink():
                    continue
                status = path.stat()
                # A name that is not UTF-8 or holds a control character still has a printable URI
                # (percent-encoded bytes); the document is listed with its problem and never read.
                problem = document_name_problem(path.relative_to(root).as_posix())
                found.append(
                    ListedDocument(
                        uri=path.as_uri(),
                        etag=f"{status.st_size:x}-{status.st_mtime_ns:x}",
                        size=status.st_size,
                        name_problem=None if problem is None else f"file {problem}; rename the file",
                    )
                )
        yield from sorted(found, key=lambda document: document.uri)


def _object_key_problem(key: str) -> str | None:
    """Why an object listed under the source's prefix cannot be read as a document, or None."""
    problem = document_name_problem(key)
    if problem is not None:
        return f"object {problem}; rename the object"
    try:
        validate_object_key(key)
    except InvalidObjectKeyError as error:  # a backslash, a '..' or empty segment
        return f"{error}; rename the object"
    return None
