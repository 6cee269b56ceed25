"""The ObjectStore contract, run against the local directory store and a real S3 server (``weed mini``).

Each test gets an empty store: a fresh directory, or a fresh bucket on the session's S3 server.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ods.adapters.object_store import LocalObjectStore, MinioObjectStore, ObjectInfo, ObjectStore
from ods.errors import InvalidObjectKeyError, ObjectNotFoundError, ObjectStoreError
from ods.factories import build_object_store
from ods.settings import load_settings
from tests.support.s3_server import S3Server

MIB = 1 << 20


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty, ready store of each kind."""
    if request.param == "local":
        local = LocalObjectStore(tmp_path / "objects")
        local.ensure_ready()
        return local
    return cast(MinioObjectStore, request.getfixturevalue("s3_store"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def fetch(url: str) -> bytes:
    """Download what a presigned URL grants, as a client without credentials would."""
    if url.startswith("file://"):
        return Path(url2pathname(urlparse(url).path)).read_bytes()
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.content


def upload(url: str, data: bytes) -> None:
    """Upload through a presigned URL, as a client without credentials would."""
    if url.startswith("file://"):
        Path(url2pathname(urlparse(url).path)).write_bytes(data)
        return
    httpx.put(url, content=data, timeout=10).raise_for_status()


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most ``step`` bytes per read, then fails if asked to."""

    def __init__(self, data: bytes, step: int = 100_003, fail_after: int | None = None) -> None:
        self._data = memoryview(data)
        self._position = 0
        self._step = step
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._fail_after is not None and self._position >= self._fail_after:
            raise OSError("upstream connection lost")
        size = min(len(buffer), self._step, len(self._data) - self._position)
        buffer[:size] = self._data[self._position : self._position + size]
        self._position += size
        return size


def test_put_bytes_then_get_bytes_returns_the_same_bytes(store: ObjectStore) -> None:
    data = "données, 2024\n".encode()

    info = store.put_bytes("raw/sales.csv", data, content_type="text/csv")

    assert info.key == "raw/sales.csv"
    assert info.size == len(data)
    assert info.sha256 == sha256(data)
    assert info.etag
    assert info.content_type == "text/csv"
    assert store.get_bytes("raw/sales.csv") == data


def test_put_file_stores_the_file_contents(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(random_bytes(300_000))

    info = store.put_file("raw/upload.bin", source)

    assert info.size == 300_000
    assert info.sha256 == sha256(source.read_bytes())
    assert store.get_bytes("raw/upload.bin") == source.read_bytes()


def test_put_file_of_a_missing_file_names_it(store: ObjectStore, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"

    with pytest.raises(ObjectStoreError, match=r"nowhere\.csv.*'raw/x'"):
        store.put_file("raw/x", missing)

    assert not store.exists("raw/x")


def test_put_stream_of_12_mib_is_stored_whole_with_its_sha256(store: ObjectStore) -> None:
    data = random_bytes(12 * MIB)

    info = store.put_stream("big/blob.bin", cast(BinaryIO, Trickle(data)))

    assert info.size == len(data)
    assert info.sha256 == sha256(data)
    assert info.etag
    stat = store.stat("big/blob.bin")
    assert (stat.size, stat.sha256, stat.etag) == (len(data), sha256(data), info.etag)
    assert sha256(store.get_bytes("big/blob.bin")) == sha256(data)


def test_a_stream_failing_midway_leaves_the_previous_object_intact(store: ObjectStore) -> None:
    store.put_bytes("raw/x.bin", b"previous")

    with pytest.raises(OSError, match="upstream connection lost"):
        store.put_stream("raw/x.bin", cast(BinaryIO, Trickle(random_bytes(3 * MIB), fail_after=MIB)))

    assert store.get_bytes("raw/x.bin") == b"previous"
    assert [info.key for info in store.list()] == ["raw/x.bin"]


def test_overwrite_replaces_content_and_sha256(store: ObjectStore) -> None:
    first = store.put_bytes("a.txt", b"first version")
    second = store.put_bytes("a.txt", b"second, longer version")

    assert store.get_bytes("a.txt") == b"second, longer version"
    assert store.stat("a.txt").sha256 == second.sha256 == sha256(b"second, longer version")
    assert second.etag != first.etag
    assert [info.key for info in store.list()] == ["a.txt"]


def test_stat_reports_size_etag_sha256_type_and_time(store: ObjectStore) -> None:
    put = store.put_bytes("docs/readme.md", b"# hello\n", content_type="text/markdown")

    info = store.stat("docs/readme.md")

    assert info.key == "docs/readme.md"
    assert info.size == 8
    assert info.etag == put.etag
    assert info.sha256 == sha256(b"# hello\n")
    assert info.content_type == "text/markdown"
    assert info.last_modified is not None
    assert info.last_modified.tzinfo is not None


def test_content_type_defaults_to_octet_stream(store: ObjectStore) -> None:
    store.put_bytes("blob", b"\x00\x01")

    assert store.stat("blob").content_type == "application/octet-stream"


def test_exists_tells_stored_keys_from_missing_ones(store: ObjectStore) -> None:
    store.put_bytes("raw/a/b.csv", b"x")

    assert store.exists("raw/a/b.csv")
    assert not store.exists("raw/a/c.csv")
    assert not store.exists("raw/a")
    assert not store.exists("raw")


LISTED_KEYS = ["a-c", "a.d", "a/b", "a/sub/x", "a0", "ab", "b/z", "données/été.csv"]


def test_list_is_recursive_sorted_and_uses_string_prefixes(store: ObjectStore) -> None:
    for index, key in enumerate(reversed(LISTED_KEYS)):
        store.put_bytes(key, b"x" * index)

    def keys(prefix: str = "") -> list[str]:
        return [info.key for info in store.list(prefix)]

    assert keys() == sorted(LISTED_KEYS)
    assert keys("a/") == ["a/b", "a/sub/x"]
    assert keys("a") == ["a-c", "a.d", "a/b", "a/sub/x", "a0", "ab"]
    assert keys("a/s") == ["a/sub/x"]
    assert keys("a/sub/x") == ["a/sub/x"]
    assert keys("donn") == ["données/été.csv"]
    assert keys("zz") == []
    assert keys("nowhere/") == []


def test_list_reports_the_same_size_and_etag_as_stat(store: ObjectStore) -> None:
    store.put_bytes("p/one", b"1")
    store.put_bytes("p/two", b"22")

    listed = list(store.list("p/"))

    assert [(info.key, info.size) for info in listed] == [("p/one", 1), ("p/two", 2)]
    for info in listed:
        stat = store.stat(info.key)
        assert info.etag and info.etag == stat.etag
        assert info.sha256 in (None, stat.sha256)


def test_delete_removes_the_object_and_is_idempotent(store: ObjectStore) -> None:
    store.put_bytes("tmp/a/b.txt", b"bye")
    store.put_bytes("tmp/keep.txt", b"stay")

    store.delete("tmp/a/b.txt")
    store.delete("tmp/a/b.txt")
    store.delete("never/existed")

    assert not store.exists("tmp/a/b.txt")
    assert [info.key for info in store.list()] == ["tmp/keep.txt"]
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("tmp/a/b.txt")


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda store, key: store.get_bytes(key), id="get_bytes"),
        pytest.param(lambda store, key: store.stat(key), id="stat"),
        pytest.param(lambda store, key: store.open(key), id="open"),
    ],
)
def test_reading_a_missing_key_raises_not_found_naming_it(
    store: ObjectStore, read: Callable[[ObjectStore, str], object]
) -> None:
    store.put_bytes("raw/present.csv", b"x")

    with pytest.raises(ObjectNotFoundError, match=r"'raw/absent\.csv'"):
        read(store, "raw/absent.csv")


def test_open_streams_the_object_in_pieces(store: ObjectStore) -> None:
    data = random_bytes(3 * MIB + 17)
    store.put_bytes("big/stream.bin", data)

    pieces = []
    with store.open("big/stream.bin") as stream:
        while piece := stream.read(256 * 1024):
            pieces.append(piece)

    assert b"".join(pieces) == data
    assert len(pieces) > 1


def test_an_open_stream_can_be_closed_early_and_the_store_still_works(store: ObjectStore) -> None:
    store.put_bytes("big/early.bin", random_bytes(2 * MIB))

    for _ in range(15):
        with store.open("big/early.bin") as stream:
            assert len(stream.read(10)) == 10

    assert store.stat("big/early.bin").size == 2 * MIB


def test_presigned_get_url_downloads_the_object(store: ObjectStore) -> None:
    data = random_bytes(70_000)
    store.put_bytes("share/report.bin", data)

    url = store.presigned_url("share/report.bin")

    assert fetch(url) == data


def test_presigned_put_url_uploads_an_object_without_our_sha256(store: ObjectStore) -> None:
    data = b"uploaded by a browser"
    store.ensure_ready()
    url = store.presigned_url("inbox/upload.txt", method="PUT")
    if store.kind == "local":
        Path(url2pathname(urlparse(url).path)).parent.mkdir(parents=True, exist_ok=True)

    upload(url, data)

    assert store.get_bytes("inbox/upload.txt") == data
    info = store.stat("inbox/upload.txt")
    assert info.size == len(data)
    assert info.sha256 is None


def test_parquet_round_trip_through_the_pyarrow_filesystem(store: ObjectStore) -> None:
    table = pa.table({"id": [1, 2, 3], "city": ["Paris", "Zürich", "東京"], "amount": [1.5, None, 3.25]})
    filesystem = store.filesystem()
    filesystem.create_dir("datasets/sales/v=1")

    pq.write_table(table, "datasets/sales/v=1/part-0.parquet", filesystem=filesystem)

    assert pq.read_table("datasets/sales/v=1/part-0.parquet", filesystem=filesystem).equals(table)
    info = store.stat("datasets/sales/v=1/part-0.parquet")
    assert info.size > 0
    assert info.sha256 is None
    assert pq.read_table(io.BytesIO(store.get_bytes(info.key))).equals(table)
    assert [listed.key for listed in store.list("datasets/")] == ["datasets/sales/v=1/part-0.parquet"]


def test_uri_names_the_object(store: ObjectStore) -> None:
    uri = store.uri("raw/sales.csv")

    if isinstance(store, MinioObjectStore):
        assert uri == f"s3://{store.bucket}/raw/sales.csv"
    else:
        assert uri.startswith("file:///")
        assert uri.endswith("/objects/raw/sales.csv")


BAD_KEYS = [
    "../escape.txt",
    "a/../../escape.txt",
    "/etc/passwd",
    "a\x00b",
    "a\nb",
    "C:\\x",
    "a\\b",
    "",
    "a//b",
]

KEYED_CALLS: dict[str, Callable[[ObjectStore, str, Path], object]] = {
    "put_bytes": lambda store, key, _: store.put_bytes(key, b"evil"),
    "put_file": lambda store, key, source: store.put_file(key, source),
    "put_stream": lambda store, key, _: store.put_stream(key, io.BytesIO(b"evil")),
    "get_bytes": lambda store, key, _: store.get_bytes(key),
    "open": lambda store, key, _: store.open(key),
    "stat": lambda store, key, _: store.stat(key),
    "exists": lambda store, key, _: store.exists(key),
    "delete": lambda store, key, _: store.delete(key),
    "presigned_get": lambda store, key, _: store.presigned_url(key),
    "presigned_put": lambda store, key, _: store.presigned_url(key, method="PUT"),
    "uri": lambda store, key, _: store.uri(key),
}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected_by_every_method_and_nothing_is_written(
    store: ObjectStore, tmp_path: Path, key: str
) -> None:
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    source = sibling / "source.bin"
    source.write_bytes(b"evil")

    for name, call in KEYED_CALLS.items():
        with pytest.raises(InvalidObjectKeyError) as caught:
            call(store, key, source)
        assert "object key" in str(caught.value), name

    assert list(store.list()) == []
    assert sorted(path.name for path in sibling.iterdir()) == ["source.bin"]
    assert not (tmp_path / "escape.txt").exists()
    if isinstance(store, LocalObjectStore):
        assert sorted(path.name for path in tmp_path.iterdir()) == ["objects", "sibling"]
        assert list(store.root.iterdir()) == []


@pytest.mark.parametrize("prefix", ["../", "/abs/", "a//", "a\\b", "x/../"])
def test_bad_list_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidObjectKeyError, match="object key"):
        list(store.list(prefix))


def test_the_factory_builds_a_working_store_from_settings(
    request: pytest.FixtureRequest, store: ObjectStore, tmp_path: Path
) -> None:
    if isinstance(store, MinioObjectStore):
        server = cast(S3Server, request.getfixturevalue("s3_server"))
        settings = load_settings(
            object_store={
                "kind": "minio",
                "endpoint": server.endpoint,
                "bucket": store.bucket,
                "access_key": server.access_key,
                "secret_key": server.secret_key,
            }
        )
    else:
        settings = load_settings(object_store={"kind": "local", "root": tmp_path / "objects"})
    store.put_bytes("shared.txt", b"seen by both")

    built = build_object_store(settings)

    assert built.kind == store.kind
    assert built.get_bytes("shared.txt") == b"seen by both"
    assert built.uri("shared.txt") == store.uri("shared.txt")


# Local store only: what a directory can get wrong.


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "objects")
    store.ensure_ready()
    return store


def test_local_symlink_leading_outside_the_root_is_refused(
    local_store: LocalObjectStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (local_store.root / "link").symlink_to(outside, target_is_directory=True)
    (local_store.root / "secret-file").symlink_to(outside / "secret.txt")

    for key in ("link/new.txt", "link/secret.txt", "secret-file"):
        with pytest.raises(InvalidObjectKeyError, match=f"'{key}'.*symbolic link"):
            local_store.put_bytes(key, b"overwritten?")
        with pytest.raises(InvalidObjectKeyError, match=f"'{key}'"):
            local_store.get_bytes(key)
    with pytest.raises(InvalidObjectKeyError, match="'link/'"):
        list(local_store.list("link/"))

    assert [info.key for info in local_store.list()] == []
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret"


def test_local_symlink_inside_the_root_is_followed(local_store: LocalObjectStore) -> None:
    local_store.put_bytes("real/data.csv", b"a,b\n")
    (local_store.root / "alias").symlink_to(local_store.root / "real", target_is_directory=True)

    assert local_store.get_bytes("alias/data.csv") == b"a,b\n"


def test_local_sha256_is_dropped_when_the_file_is_replaced_by_hand(local_store: LocalObjectStore) -> None:
    local_store.put_bytes("raw/a.csv", b"original")
    path = local_store.root / "raw" / "a.csv"
    replacement = path.with_name("replacement")
    replacement.write_bytes(b"edited!!")
    replacement.replace(path)

    after_same_size_swap = local_store.stat("raw/a.csv")
    path.write_bytes(b"edited in place, longer")
    after_edit = local_store.stat("raw/a.csv")

    assert after_same_size_swap.sha256 is None
    assert after_edit.sha256 is None
    assert after_edit.size == len(b"edited in place, longer")
    assert local_store.put_bytes("raw/a.csv", b"again").sha256 == local_store.stat("raw/a.csv").sha256


def test_local_files_placed_by_hand_are_objects_without_sha256(local_store: LocalObjectStore) -> None:
    (local_store.root / "dropped").mkdir()
    (local_store.root / "dropped" / "file.txt").write_bytes(b"by hand")

    info = local_store.stat("dropped/file.txt")

    assert (info.size, info.sha256, info.content_type) == (7, None, None)
    assert [listed.key for listed in local_store.list()] == ["dropped/file.txt"]


@pytest.mark.parametrize("key", [".ods-meta/raw/a.csv.json", ".ods-meta", "raw/.ods-tmp-1234"])
def test_local_reserved_names_are_rejected(local_store: LocalObjectStore, key: str) -> None:
    local_store.put_bytes("raw/a.csv", b"x")

    with pytest.raises(InvalidObjectKeyError, match="reserved"):
        local_store.put_bytes(key, b"forged metadata")
    with pytest.raises(InvalidObjectKeyError, match="reserved"):
        local_store.get_bytes(key)
    with pytest.raises(InvalidObjectKeyError, match="reserved"):
        list(local_store.list(".ods-meta/"))

    assert [info.key for info in local_store.list()] == ["raw/a.csv"]
    assert local_store.stat("raw/a.csv").sha256 == sha256(b"x")


def test_local_writes_leave_only_objects_and_their_sidecars(local_store: LocalObjectStore) -> None:
    local_store.put_bytes("a/b.txt", b"1")
    local_store.put_stream("a/c.txt", io.BytesIO(b"2"))
    with pytest.raises(OSError, match="upstream"):
        local_store.put_stream("a/d.txt", cast(BinaryIO, Trickle(b"3" * 10, step=4, fail_after=4)))
    local_store.delete("a/b.txt")

    files = sorted(
        str(path.relative_to(local_store.root)) for path in local_store.root.rglob("*") if path.is_file()
    )

    assert files == [".ods-meta/a/c.txt.json", "a/c.txt"]


def test_local_delete_prunes_empty_directories(local_store: LocalObjectStore) -> None:
    local_store.put_bytes("deep/er/est.txt", b"x")
    local_store.put_bytes("deep/keep.txt", b"y")

    local_store.delete("deep/er/est.txt")

    assert not (local_store.root / "deep" / "er").exists()
    assert (local_store.root / "deep" / "keep.txt").exists()
    assert not (local_store.root / ".ods-meta" / "deep" / "er").exists()


def test_local_key_and_keys_below_it_cannot_coexist(local_store: LocalObjectStore) -> None:
    local_store.put_bytes("report", b"x")
    local_store.put_bytes("folder/2024.csv", b"y")

    with pytest.raises(ObjectStoreError, match=r"'report/2024\.csv'.*cannot hold both"):
        local_store.put_bytes("report/2024.csv", b"y")
    with pytest.raises(ObjectStoreError, match=r"'folder'.*cannot hold both"):
        local_store.put_bytes("folder", b"z")

    assert local_store.get_bytes("report") == b"x"
    assert [info.key for info in local_store.list()] == ["folder/2024.csv", "report"]


def test_local_ensure_ready_names_a_root_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(ObjectStoreError, match=r"a-file.*ODS_OBJECT_STORE__ROOT"):
        LocalObjectStore(blocker / "objects").ensure_ready()


# S3 store only: what a network service can get wrong.


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.s3
def test_s3_unreachable_endpoint_fails_fast_naming_it() -> None:
    endpoint = f"127.0.0.1:{_unused_port()}"
    store = MinioObjectStore(endpoint, "ods", "some-access-key", "some-secret-key")

    for call in (store.ensure_ready, lambda: store.get_bytes("raw/a.csv"), lambda: list(store.list())):
        started = time.monotonic()
        with pytest.raises(ObjectStoreError) as caught:
            call()
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert f"cannot reach S3 endpoint {endpoint} (bucket 'ods'): connection refused" in message
        assert "ODS_OBJECT_STORE__ENDPOINT" in message
        assert "some-secret-key" not in message


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["secret", "access_key"])
def test_s3_wrong_credentials_are_reported_without_the_secret(
    s3_server: S3Server, s3_store: MinioObjectStore, wrong: str
) -> None:
    s3_store.put_bytes("raw/a.csv", b"x")
    secret = "wrong-secret-" + os.urandom(8).hex() if wrong == "secret" else s3_server.secret_key
    access_key = "nobody-" + os.urandom(4).hex() if wrong == "access_key" else s3_server.access_key
    intruder = MinioObjectStore(s3_server.endpoint, s3_store.bucket, access_key, secret)

    for call in (lambda: intruder.get_bytes("raw/a.csv"), lambda: intruder.put_bytes("raw/b.csv", b"y")):
        with pytest.raises(ObjectStoreError) as caught:
            call()
        message = str(caught.value)
        assert "credentials" in message
        assert s3_server.endpoint in message
        assert secret not in message
        assert s3_server.secret_key not in message

    assert [info.key for info in s3_store.list()] == ["raw/a.csv"]


@pytest.mark.s3
def test_s3_missing_bucket_says_how_to_create_it(s3_server: S3Server) -> None:
    store = MinioObjectStore(
        s3_server.endpoint, "no-such-bucket-here", s3_server.access_key, s3_server.secret_key
    )

    with pytest.raises(ObjectStoreError, match=r"'no-such-bucket-here'.*does not exist.*ensure_ready"):
        store.get_bytes("raw/a.csv")


@pytest.mark.s3
def test_s3_ensure_ready_creates_the_bucket_once(s3_server: S3Server) -> None:
    store = MinioObjectStore(
        s3_server.endpoint, "ods-ensure-twice", s3_server.access_key, s3_server.secret_key
    )

    store.ensure_ready()
    store.ensure_ready()

    assert store.put_bytes("k", b"v").sha256 == sha256(b"v")


@pytest.mark.s3
def test_s3_large_upload_is_multipart_and_keeps_our_sha256(s3_store: MinioObjectStore) -> None:
    data = random_bytes(12 * MIB, seed=11)

    info: ObjectInfo = s3_store.put_bytes("big/multi.bin", data)

    assert info.etag.endswith("-3")
    assert s3_store.stat("big/multi.bin").sha256 == sha256(data)
