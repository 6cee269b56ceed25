"""Listing and reading documents from a local folder and from a real S3 bucket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ods.adapters.documents.source import DocumentSource, DocumentSourceError
from ods.adapters.object_store import MinioObjectStore
from ods.domain.object_keys import printable_name
from tests.support.s3_server import S3Server

BAD_OBJECT_NAMES = {
    "docs/ctrl\x01char.txt": 'name "docs/ctrl\\x01char.txt" has control character \\x01 (U+0001) at character 10',
    "docs/new\nline.txt": "has control character \\n (U+000A) at character 9",
    "docs/esc\x1b[31mred.txt": "has control character \\x1b (U+001B) at character 9",
    "docs/c1\x85.txt": "has control character \\u0085 (U+0085) at character 8",
}
""" Object keys S3 accepts but a document cannot be named by, and what the quarantine reason says."""


def put_raw_objects(server: S3Server, bucket: str, keys: list[str]) -> None:
    """Objects written with the minio client itself: our store refuses such keys before any I/O."""
    import io

    from minio import Minio

    client = Minio(server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False)
    for key in keys:
        client.put_object(bucket, key, io.BytesIO(b"text under a bad name"), 21)


def test_local_folder_lists_files_recursively_with_cheap_hints(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# A")
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "link.txt").symlink_to("/etc/hostname")
    source = DocumentSource(str(tmp_path))

    listed = list(source.list())

    assert [document.uri for document in listed] == [
        (tmp_path / "a.md").as_uri(),
        (tmp_path / "sub/b.txt").as_uri(),
    ]
    assert source.read(listed[0].uri) == b"# A"
    before = listed[0].etag
    os.utime(tmp_path / "a.md", ns=(1, 1))
    assert next(source.list()).etag != before


def test_local_reads_outside_the_folder_are_refused(tmp_path: Path) -> None:
    source = DocumentSource(str(tmp_path))

    with pytest.raises(DocumentSourceError, match="outside the source folder"):
        source.read(Path("/etc/hostname").as_uri())


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentSourceError, match="not a directory"):
        DocumentSource(str(tmp_path / "nope"))


@pytest.mark.s3
def test_bucket_prefix_lists_objects_with_etags(s3_store: MinioObjectStore) -> None:
    s3_store.put_bytes("docs/a.md", b"# A")
    s3_store.put_bytes("docs/x/b.txt", b"b")
    s3_store.put_bytes("other/c.txt", b"c")
    source = DocumentSource(f"s3://{s3_store.bucket}/docs/", s3_store)

    listed = list(source.list())

    assert [document.uri for document in listed] == [
        f"s3://{s3_store.bucket}/docs/a.md",
        f"s3://{s3_store.bucket}/docs/x/b.txt",
    ]
    assert all(document.etag for document in listed)
    assert source.read(listed[0].uri) == b"# A"


@pytest.mark.s3
def test_a_prefix_in_another_bucket_is_refused(s3_store: MinioObjectStore) -> None:
    with pytest.raises(DocumentSourceError, match="not in the configured object store"):
        DocumentSource("s3://someone-elses-bucket/docs/", s3_store)


def test_local_names_that_are_not_usable_are_listed_with_their_problem(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    for name in (b"good.txt", b"ctrl\x01char.txt", b"new\nline.txt", b"bad\xffutf8.txt"):
        Path(os.fsdecode(root + b"/" + name)).write_bytes(b"some text")
    deep = tmp_path.joinpath(*["d" * 250] * 5)  # a 1,261-byte relative name
    deep.mkdir(parents=True)
    (deep / "long.txt").write_bytes(b"some text")
    source = DocumentSource(str(tmp_path))

    listed = {document.uri.rsplit("/", 1)[-1]: document for document in source.list()}

    assert set(listed) == {"good.txt", "ctrl%01char.txt", "new%0Aline.txt", "bad%FFutf8.txt", "long.txt"}
    assert all(document.uri.isprintable() for document in listed.values())
    assert listed["good.txt"].name_problem is None
    assert listed["ctrl%01char.txt"].name_problem == (
        'file name "ctrl\\x01char.txt" has control character \\x01 (U+0001) at character 5; rename the file'
    )
    assert "\\n (U+000A) at character 4" in (listed["new%0Aline.txt"].name_problem or "")
    assert "is not valid UTF-8: byte \\xff at character 4" in (listed["bad%FFutf8.txt"].name_problem or "")
    assert "is 1,263 bytes long, over the limit of 1,024 bytes" in (listed["long.txt"].name_problem or "")


def test_reads_stop_one_byte_past_max_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"0123456789")
    source = DocumentSource(str(tmp_path))
    [listed] = source.list()

    assert source.read(listed.uri, max_bytes=4) == b"01234"
    assert source.read(listed.uri, max_bytes=10) == b"0123456789"
    assert source.read(listed.uri) == b"0123456789"


@pytest.mark.s3
def test_bucket_objects_with_unusable_names_are_listed_printably_with_their_problem(
    s3_server: S3Server, s3_store: MinioObjectStore
) -> None:
    s3_store.put_bytes("docs/good.txt", b"0123456789")
    put_raw_objects(s3_server, s3_store.bucket, list(BAD_OBJECT_NAMES))
    source = DocumentSource(f"s3://{s3_store.bucket}/docs/", s3_store)

    listed = list(source.list())

    by_uri = {document.uri.removeprefix(f"s3://{s3_store.bucket}/"): document for document in listed}
    assert set(by_uri) == {
        "docs/good.txt",
        "docs/ctrl\\x01char.txt",
        "docs/new\\nline.txt",
        "docs/esc\\x1b[31mred.txt",
        "docs/c1\\u0085.txt",
    }
    assert by_uri["docs/good.txt"].name_problem is None
    for key, problem in BAD_OBJECT_NAMES.items():
        [document] = [item for item in listed if item.uri.endswith(printable_name(key))]
        assert document.name_problem is not None and problem in document.name_problem
        assert document.name_problem.endswith("; rename the object")
        assert document.name_problem.isprintable() and document.etag and document.size == 21
    assert source.read(by_uri["docs/good.txt"].uri, max_bytes=3) == b"0123"
