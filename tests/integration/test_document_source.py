"""Listing and reading documents from a local folder and from a real S3 bucket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ods.adapters.document_source import DocumentSource, DocumentSourceError
from ods.adapters.object_store import MinioObjectStore


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
