"""The S3 object store (MinIO, SeaweedFS, AWS S3, ...) through the ``minio`` SDK.

Our sha256 travels with every object we write as user metadata (``x-amz-meta-sha256``), because S3 ETags
are not content hashes (a multipart ETag is an MD5 of part MD5s). Nothing touches the network until a
method is called, and an unreachable endpoint fails within seconds with a message naming it. The ``minio``
SDK itself is imported by the constructor, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, cast

import certifi
import pyarrow.fs
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ods.adapters.object_store.base import ObjectInfo
from ods.domain.hashing import iter_chunks, sha256_bytes, sha256_stream
from ods.domain.object_keys import validate_object_key
from ods.errors import ObjectNotFoundError, ObjectStoreError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from minio.datatypes import Object
    from minio.error import S3Error
    from urllib3 import BaseHTTPResponse

SHA256_METADATA = "sha256"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
SPOOL_MEMORY_BYTES = 8 << 20
_ERROR_BODY_CHARS = 300
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)


class MinioObjectStore:
    """An :class:`~ods.adapters.object_store.base.ObjectStore` holding every object in one S3 bucket.

    ``endpoint`` is ``host:port`` (``secure`` picks HTTPS); ``timeout_s`` bounds each connection attempt
    and each wait for data, and a refused or timed-out connection is retried only once.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._endpoint = endpoint
        self._bucket = bucket
        self._access_key = access_key
        self._secret_key = secret_key
        self._secure = secure
        self._region = region
        self._timeout_s = timeout_s
        from minio import Minio

        try:
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=_build_http_client(timeout_s),
            )
        except ValueError as error:
            raise ObjectStoreError(
                f"invalid S3 endpoint {endpoint!r}: {error}; set ODS_OBJECT_STORE__ENDPOINT to host:port "
                "(no scheme, no path) and ODS_OBJECT_STORE__SECURE=true for HTTPS"
            ) from error

    @property
    def kind(self) -> str:
        """Always ``'minio'`` (any S3-compatible server)."""
        return "minio"

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 server."""
        return self._endpoint

    @property
    def bucket(self) -> str:
        """The bucket holding the objects."""
        return self._bucket

    def __repr__(self) -> str:
        return (
            f"MinioObjectStore(endpoint={self._endpoint!r}, bucket={self._bucket!r}, secure={self._secure})"
        )

    @property
    def location(self) -> str:
        """``s3://bucket/``."""
        return f"s3://{self._bucket}/"

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self._bucket}/{validate_object_key(key)}"

    def ensure_ready(self) -> None:
        """Create the bucket if it does not exist yet."""
        from minio.error import S3Error

        with self._translate_errors("check or create the bucket"):
            if self._client.bucket_exists(self._bucket):
                return
            try:
                self._client.make_bucket(self._bucket)
            except S3Error as error:
                if error.code != "BucketAlreadyOwnedByYou":
                    raise

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key`` with its sha256 as user metadata."""
        validate_object_key(key)
        return self._put(key, io.BytesIO(data), len(data), sha256_bytes(data), content_type)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        """Upload the file at ``path``, hashed first so the sha256 goes with it (the file must not change meanwhile)."""
        validate_object_key(key)
        with _open_source_file(path, key) as source:
            sha256, size = sha256_stream(source)
            source.seek(0)
            return self._put(key, source, size, sha256, content_type)

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str | None = None) -> ObjectInfo:
        """Upload everything readable from ``stream``, spooled to a temp file so its length and hash are known."""
        validate_object_key(key)
        digest = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
            for block in iter_chunks(stream):
                digest.update(block)
                spool.write(block)
                size += len(block)
            spool.seek(0)
            return self._put(key, cast(BinaryIO, spool), size, digest.hexdigest(), content_type)

    def get_bytes(self, key: str) -> bytes:
        """The whole object. Raises ObjectNotFoundError."""
        validate_object_key(key)
        with self._translate_errors("read", key):
            response = self._client.get_object(self._bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def open(self, key: str) -> BinaryIO:
        """A buffered stream over the object's body; closing it returns the connection to the pool."""
        validate_object_key(key)
        with self._translate_errors("read", key):
            response = self._client.get_object(self._bucket, key)
        where = f"bucket {self._bucket!r} at {self._endpoint}"
        return io.BufferedReader(_ResponseReader(response, key, where, self._timeout_s))

    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag, time, content type and (when we wrote the object) sha256."""
        validate_object_key(key)
        with self._translate_errors("stat", key):
            found = self._client.stat_object(self._bucket, key)
        return _object_info(key, found)

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key.

        The listing is collected and sorted here: S3 promises key order, but some servers (SeaweedFS) list
        directory by directory. ``sha256`` is None unless the server returns user metadata in listings
        (MinIO does, SeaweedFS does not): call :meth:`stat` where identity matters.
        """
        validate_object_key(prefix, allow_prefix=True)
        with self._translate_errors("list", prefix):
            listing = self._client.list_objects(
                self._bucket, prefix=prefix or None, recursive=True, include_user_meta=True
            )
            found = [
                _object_info(item.object_name, item)
                for item in listing
                if item.object_name is not None and not item.is_dir
            ]
        return iter(sorted(found, key=lambda info: info.key))

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error (S3 semantics)."""
        validate_object_key(key)
        with self._translate_errors("delete", key):
            self._client.remove_object(self._bucket, key)

    def presigned_url(
        self, key: str, *, expires: timedelta = timedelta(hours=1), method: Literal["GET", "PUT"] = "GET"
    ) -> str:
        """A URL to download (GET) or upload (PUT) the object without credentials until ``expires`` passes."""
        validate_object_key(key)
        if method not in ("GET", "PUT"):
            raise ValueError(f"presigned URLs are for 'GET' or 'PUT', not {method!r}")
        with self._translate_errors("presign", key):
            if method == "GET":
                return self._client.presigned_get_object(self._bucket, key, expires=expires)
            return self._client.presigned_put_object(self._bucket, key, expires=expires)

    def filesystem(self) -> pyarrow.fs.FileSystem:
        """A pyarrow filesystem rooted at the bucket: its paths are object keys (for Parquet I/O)."""
        s3 = pyarrow.fs.S3FileSystem(
            access_key=self._access_key,
            secret_key=self._secret_key,
            endpoint_override=self._endpoint,
            scheme="https" if self._secure else "http",
            region=self._region or "us-east-1",
            connect_timeout=self._timeout_s,
            request_timeout=self._timeout_s,
        )
        return pyarrow.fs.SubTreeFileSystem(self._bucket, s3)

    def _put(
        self, key: str, stream: BinaryIO, length: int, sha256: str, content_type: str | None
    ) -> ObjectInfo:
        content_type = content_type or DEFAULT_CONTENT_TYPE
        with self._translate_errors("write", key):
            result = self._client.put_object(
                self._bucket,
                key,
                stream,
                length,
                content_type=content_type,
                metadata={SHA256_METADATA: sha256},
            )
        return ObjectInfo(
            key=key,
            size=length,
            etag=result.etag or "",
            sha256=sha256,
            last_modified=result.last_modified,
            content_type=content_type,
        )

    @contextmanager
    def _translate_errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn SDK and transport errors into ObjectStoreError / ObjectNotFoundError that say what to check."""
        from minio.error import InvalidResponseError, S3Error, ServerError

        try:
            yield
        except S3Error as error:
            raise self._s3_error(error, action, key) from error
        except (ServerError, InvalidResponseError) as error:
            raise ObjectStoreError(
                f"S3 endpoint {self._endpoint} (bucket {self._bucket!r}) gave no S3 answer to {action}"
                f"{_of(key)}: {str(error)[:_ERROR_BODY_CHARS]}; check that ODS_OBJECT_STORE__ENDPOINT points "
                "at an S3 server and look at its logs"
            ) from error
        except urllib3.exceptions.HTTPError as error:
            raise self._transport_error(error) from error

    def _transport_error(self, error: urllib3.exceptions.HTTPError) -> ObjectStoreError:
        """An error for a request that never got an answer (refused, timed out, TLS, dropped)."""
        return ObjectStoreError(
            f"cannot reach S3 endpoint {self._endpoint} (bucket {self._bucket!r}): "
            f"{_describe_transport_error(error, self._timeout_s)}; "
            "check ODS_OBJECT_STORE__ENDPOINT, ODS_OBJECT_STORE__SECURE and that the server is running"
        )

    def _s3_error(
        self, error: S3Error, action: str, key: str | None
    ) -> ObjectStoreError | ObjectNotFoundError:
        where = f"bucket {self._bucket!r} at {self._endpoint}"
        if error.code == "NoSuchKey" and key is not None:
            return ObjectNotFoundError(f"no object {key!r} in {where}")
        if error.code == "NoSuchBucket":
            return ObjectStoreError(
                f"{where} does not exist; create it (`ensure_ready()`) or fix ODS_OBJECT_STORE__BUCKET"
            )
        if error.code in _CREDENTIAL_CODES:
            return ObjectStoreError(
                f"S3 endpoint {self._endpoint} denied access to bucket {self._bucket!r} ({error.code}) while "
                f"trying to {action}{_of(key)}; check the credentials ODS_OBJECT_STORE__ACCESS_KEY / "
                "ODS_OBJECT_STORE__SECRET_KEY and the bucket's access policy"
            )
        return ObjectStoreError(
            f"S3 endpoint {self._endpoint} refused to {action}{_of(key)} (bucket {self._bucket!r}): "
            f"{error.code}: {error.message}"
        )


class _ResponseReader(io.RawIOBase):
    """A raw, read-only stream over an S3 GET response that releases its connection on close."""

    def __init__(self, response: BaseHTTPResponse, key: str, where: str, timeout_s: float) -> None:
        super().__init__()
        self._response = response
        self._key = key
        self._where = where
        self._timeout_s = timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        try:
            return self._response.readinto(cast(memoryview, buffer))
        except urllib3.exceptions.HTTPError as error:
            raise ObjectStoreError(
                f"reading object {self._key!r} from {self._where} broke off: "
                f"{_describe_transport_error(error, self._timeout_s)}; retry, and check the server if it persists"
            ) from error

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


def _build_http_client(timeout_s: float) -> urllib3.PoolManager:
    """A pool with short timeouts and few retries, so a dead endpoint fails in seconds, not minutes."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=3,
            connect=1,
            read=1,
            status=2,
            backoff_factor=0.2,
            status_forcelist=(500, 502, 503, 504),
            raise_on_status=False,
        ),
    )


def _open_source_file(path: Path, key: str) -> BinaryIO:
    try:
        return Path(path).open("rb")
    except OSError as error:
        raise ObjectStoreError(f"cannot read {path} to store it as {key!r}: {error.strerror}") from error


def _object_info(key: str, found: Object) -> ObjectInfo:
    """What a stat or a listing says of the object under ``key``."""
    return ObjectInfo(
        key=key,
        size=found.size or 0,
        etag=found.etag or "",
        sha256=_sha256_from(found.metadata),
        last_modified=found.last_modified,
        content_type=found.content_type,
    )


def _sha256_from(metadata: Mapping[str, str] | None) -> str | None:
    """Our sha256 from response headers (``x-amz-meta-sha256``) or listing user metadata."""
    if not metadata:
        return None
    wanted = {f"x-amz-meta-{SHA256_METADATA}", SHA256_METADATA}
    return next((value for name, value in metadata.items() if name.lower() in wanted), None)


def _describe_transport_error(error: urllib3.exceptions.HTTPError, timeout_s: float) -> str:
    reason: BaseException = error
    if isinstance(error, MaxRetryError) and error.reason is not None:
        reason = error.reason
    if isinstance(reason, NameResolutionError):
        return "the host name does not resolve"
    if isinstance(reason, NewConnectionError):
        if isinstance(reason.__cause__, ConnectionRefusedError):
            return "connection refused"
        return str(reason.__cause__ or reason)
    if isinstance(reason, ConnectTimeoutError):
        return f"no connection within {timeout_s:g} s"
    if isinstance(reason, ReadTimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, SSLError):
        return f"TLS failed ({reason})"
    if isinstance(reason, ProtocolError):
        return f"the connection broke ({reason})"
    return str(reason)


def _of(key: str | None) -> str:
    return f" {key!r}" if key else ""
