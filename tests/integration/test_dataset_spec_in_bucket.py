"""A dataset spec kept in the bucket names its raw table relative to itself, as a local spec does: when
a spec arrives, the watcher starts prepare-dataset with nothing but the spec's s3:// URI.
"""

from __future__ import annotations

import pytest

from ods.adapters.object_store.minio_store import MinioObjectStore
from ods.domain.hashing import sha256_bytes
from ods.settings import Settings, load_settings
from ods.stages.prepare import SourceNotFoundError, fetch_source, load_spec
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.s3

TABLE = b"order_id,amount\n1,9.5\n2,3.0\n"


def _settings(store: MinioObjectStore, server: S3Server) -> Settings:
    return load_settings(
        object_store={
            "kind": "minio",
            "endpoint": server.endpoint,
            "bucket": store.bucket,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
        }
    )


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("orders.csv", "raw/orders.csv"),
        ("./orders.csv", "raw/orders.csv"),
        ("../in/orders.csv", "in/orders.csv"),
    ],
)
def test_a_relative_source_is_read_beside_the_spec_in_the_bucket(
    s3_store: MinioObjectStore, s3_server: S3Server, written: str, key: str
) -> None:
    settings = _settings(s3_store, s3_server)
    s3_store.put_bytes(key, TABLE)
    s3_store.put_bytes("raw/orders.yaml", f"name: orders\nsource:\n  uri: {written}\n".encode())

    source = fetch_source(load_spec(f"s3://{s3_store.bucket}/raw/orders.yaml", settings), settings)

    assert source.uri == s3_store.uri(key)
    assert source.sha256 == sha256_bytes(TABLE)


def test_a_relative_source_above_the_bucket_is_refused(
    s3_store: MinioObjectStore, s3_server: S3Server
) -> None:
    settings = _settings(s3_store, s3_server)
    s3_store.put_bytes("raw/orders.yaml", b"name: orders\nsource:\n  uri: ../../orders.csv\n")
    loaded = load_spec(f"s3://{s3_store.bucket}/raw/orders.yaml", settings)

    with pytest.raises(SourceNotFoundError, match="outside bucket"):
        fetch_source(loaded, settings)
