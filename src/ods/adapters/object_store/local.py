"""The local object store: objects are files under one root directory (the local profile).

Our sha256 and content type live in a JSON sidecar under ``root/.ods-meta/<key>.json``, together with the
size, mtime and inode they were computed for, so a file replaced by hand is reported with ``sha256=None``
instead of a hash that no longer matches. Segments starting with ``.ods-`` are reserved for this bookkeeping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow.fs

from ods.adapters.object_store.base import ObjectInfo
from ods.domain.hashing import iter_chunks
from ods.domain.object_keys import validate_object_key
from ods.errors import InvalidObjectKeyError, ObjectNotFoundError, ObjectStoreError

META_DIR = ".ods-meta"
RESERVED_SEGMENT_PREFIX = ".ods-"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TEMP_PREFIX = ".ods-tmp-"


class LocalObjectStore:
    """An :class:`~ods.adapters.object_store.base.ObjectStore` backed by a directory.

    Writes are atomic (temp file in the destination directory, fsync, ``os.replace``), and no key can reach
    outside ``root``, not even through a symbolic link planted inside it.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root).expanduser().resolve()

    @property
    def kind(self) -> str:
        """Always ``'local'``."""
        return "local"

    @property
    def root(self) -> Path:
        """The absolute directory holding the objects."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self._root)!r})"

    @property
    def location(self) -> str:
        """``file:///abs/root/``."""
        return self._root.as_uri().rstrip("/") + "/"

    def uri(self, key: str) -> str:
        """``file:///abs/path/to/key``."""
        return self._object_path(key).as_uri()

    def ensure_ready(self) -> None:
        """Create the root directory if missing."""
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ObjectStoreError(
                f"cannot create the local object store root {self._root}: {error.strerror}; "
                "set ODS_OBJECT_STORE__ROOT (or ODS_HOME) to a writable directory"
            ) from error

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key``, atomically replacing any previous object."""
        path = self._object_path(key)

        def write(out: BinaryIO) -> str:
            out.write(data)
            return hashlib.sha256(data).hexdigest()

        return self._write_atomically(key, path, write, content_type)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        """Copy the file at ``path`` under ``key``."""
        target = self._object_path(key)
        with _open_source_file(path, key) as source:
            return self._write_atomically(key, target, lambda out: _copy_hashing(source, out), content_type)

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str | None = None) -> ObjectInfo:
        """Store everything readable from ``stream`` under ``key``."""
        path = self._object_path(key)
        return self._write_atomically(key, path, lambda out: _copy_hashing(stream, out), content_type)

    def get_bytes(self, key: str) -> bytes:
        """The whole object. Raises ObjectNotFoundError."""
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        """The object's file opened for binary reading."""
        path = self._object_path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(key) from None
        except OSError as error:
            raise ObjectStoreError(f"cannot read object {key!r} at {path}: {error.strerror}") from error

    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag, time and (when our sidecar is still current) sha256 and content type."""
        path = self._object_path(key)
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(key) from None
        if not path.is_file():
            raise self._not_found(key)
        return self._info(key, status, self._read_sidecar(key, status))

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self._object_path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a string prefix, as in S3), sorted by key."""
        validate_object_key(prefix, allow_prefix=True)
        self._refuse_reserved(prefix)
        directory_key = prefix.rpartition("/")[0]
        start = self._contained(prefix, self._root / directory_key) if directory_key else self._root
        keys = sorted(key for key in self._walk(start, directory_key) if key.startswith(prefix))
        return self._stat_each(keys)

    def delete(self, key: str) -> None:
        """Remove the object and its sidecar; a missing object is not an error. Empty parents are pruned."""
        path = self._object_path(key)
        if path.is_dir():
            raise ObjectStoreError(
                f"cannot delete {key!r}: it is a directory of other objects in {self._root}, not an object"
            )
        for target in (path, self._sidecar_path(key)):
            try:
                target.unlink()
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as error:
                raise ObjectStoreError(
                    f"cannot delete object {key!r} at {target}: {error.strerror}"
                ) from error
        self._prune_empty_parents(path.parent, self._root)
        self._prune_empty_parents(self._sidecar_path(key).parent, self._root / META_DIR)

    def presigned_url(
        self, key: str, *, expires: timedelta = timedelta(hours=1), method: Literal["GET", "PUT"] = "GET"
    ) -> str:
        """The object's ``file://`` URI: local files need no signing, so ``expires`` and ``method`` are moot."""
        return self.uri(key)

    def filesystem(self) -> pyarrow.fs.FileSystem:
        """A pyarrow filesystem rooted at the store's directory (paths are object keys)."""
        return pyarrow.fs.SubTreeFileSystem(str(self._root), pyarrow.fs.LocalFileSystem())

    def _object_path(self, key: str) -> Path:
        validate_object_key(key)
        self._refuse_reserved(key)
        return self._contained(key, self._root / key)

    def _refuse_reserved(self, key: str) -> None:
        reserved = next((part for part in key.split("/") if part.startswith(RESERVED_SEGMENT_PREFIX)), None)
        if reserved is not None:
            raise InvalidObjectKeyError(
                f"object key {key!r} uses the reserved name {reserved!r}: names starting with "
                f"{RESERVED_SEGMENT_PREFIX!r} hold the local store's metadata; choose another key"
            )

    def _contained(self, key: str, path: Path) -> Path:
        if not path.resolve().is_relative_to(self._root):
            raise InvalidObjectKeyError(
                f"object key {key!r} leads outside the store root {self._root} through a symbolic link; "
                "remove the link or store the object under another key"
            )
        return path

    def _sidecar_path(self, key: str) -> Path:
        return self._root / META_DIR / f"{key}.json"

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"no object {key!r} in the local store at {self._root}")

    def _write_atomically(
        self, key: str, path: Path, write: Callable[[BinaryIO], str], content_type: str | None
    ) -> ObjectInfo:
        """Write through a temp file next to ``path`` so readers see the old object or the new, never half."""
        if path.is_dir():
            raise ObjectStoreError(
                f"cannot store {key!r}: {path} is a directory holding objects under {key + '/'!r}; "
                "the local store cannot hold both a key and keys below it"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as error:
            raise ObjectStoreError(
                f"cannot store {key!r}: a part of its prefix is already an object in {self._root}; "
                "the local store cannot hold both a key and keys below it"
            ) from error
        except OSError as error:
            raise ObjectStoreError(f"cannot create the directory for {key!r}: {error.strerror}") from error
        self._contained(key, path)
        descriptor, temp_path = _create_temp_file(path.parent)
        try:
            with os.fdopen(descriptor, "wb") as out:
                sha256 = write(out)
                out.flush()
                os.fsync(out.fileno())
                status = os.fstat(out.fileno())
            temp_path.replace(path)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
        sidecar = {
            "sha256": sha256,
            "content_type": content_type or DEFAULT_CONTENT_TYPE,
            "size": status.st_size,
            "mtime_ns": status.st_mtime_ns,
            "inode": status.st_ino,
        }
        self._write_sidecar(key, sidecar)
        return self._info(key, status, sidecar)

    def _write_sidecar(self, key: str, sidecar: dict[str, object]) -> None:
        path = self._sidecar_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temp_path = _create_temp_file(path.parent)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                json.dump(sidecar, out)
            temp_path.replace(path)
        except OSError as error:
            raise ObjectStoreError(
                f"stored {key!r} but could not record its sha256 in {path}: {error.strerror}"
            ) from error

    def _read_sidecar(self, key: str, status: os.stat_result) -> dict[str, object] | None:
        """The sidecar of ``key`` if it still describes the file on disk, else None."""
        try:
            sidecar = json.loads(self._sidecar_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(sidecar, dict):
            return None
        recorded = (sidecar.get("size"), sidecar.get("mtime_ns"), sidecar.get("inode"))
        if recorded != (status.st_size, status.st_mtime_ns, status.st_ino):
            return None
        return sidecar

    def _info(self, key: str, status: os.stat_result, sidecar: dict[str, object] | None) -> ObjectInfo:
        sha256 = sidecar.get("sha256") if sidecar else None
        content_type = sidecar.get("content_type") if sidecar else None
        return ObjectInfo(
            key=key,
            size=status.st_size,
            etag=f"{status.st_size:x}-{status.st_mtime_ns:x}",
            sha256=sha256 if isinstance(sha256, str) else None,
            last_modified=datetime.fromtimestamp(status.st_mtime_ns / 1e9, tz=UTC),
            content_type=content_type if isinstance(content_type, str) else None,
        )

    def _stat_each(self, keys: Iterable[str]) -> Iterator[ObjectInfo]:
        """Stat ``keys`` lazily, skipping any deleted since the directory walk."""
        for key in keys:
            with contextlib.suppress(ObjectNotFoundError):
                yield self.stat(key)

    def _walk(self, directory: Path, directory_key: str) -> Iterator[str]:
        """Keys of the regular files below ``directory``, skipping bookkeeping and links leading outside."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(RESERVED_SEGMENT_PREFIX):
                continue
            key = f"{directory_key}/{entry.name}" if directory_key else entry.name
            if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(self._root):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            elif entry.is_file():
                yield key

    @staticmethod
    def _prune_empty_parents(directory: Path, stop: Path) -> None:
        while directory != stop and directory.is_relative_to(stop):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


def _open_source_file(path: Path, key: str) -> BinaryIO:
    try:
        return Path(path).open("rb")
    except OSError as error:
        raise ObjectStoreError(f"cannot read {path} to store it as {key!r}: {error.strerror}") from error


def _create_temp_file(directory: Path) -> tuple[int, Path]:
    """Create a fresh, exclusively opened file in ``directory`` with the umask's default permissions."""
    while True:
        candidate = directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(candidate, flags, 0o666), candidate
        except FileExistsError:
            continue


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX only; Windows cannot open directories)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _copy_hashing(source: BinaryIO, out: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter_chunks(source):
        digest.update(block)
        out.write(block)
    return digest.hexdigest()
