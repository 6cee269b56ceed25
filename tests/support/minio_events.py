"""MinIO bucket-notification bodies as MinIO documents them (for the webhook bridge's tests)."""

from __future__ import annotations

import json
from typing import Any


def minio_record(
    event: str, key: str, etag: str | None = "0123abcd", size: int | None = 12, bucket: str = "lake"
) -> dict[str, Any]:
    """One record as MinIO sends it (keys URL-encoded, eTag without quotes)."""
    obj: dict[str, Any] = {"key": key, "sequencer": "17A0A1B2C3D4E5F6"}
    if etag is not None:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size
        obj["contentType"] = "text/csv"
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-11-30T20:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "minioadmin"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "minioadmin"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def minio_body(first: dict[str, Any], *more: dict[str, Any]) -> bytes:
    """A notification body: MinIO's top-level EventName and Key describe the first record."""
    bucket, key = first["s3"]["bucket"]["name"], first["s3"]["object"]["key"]
    return json.dumps(
        {"EventName": first["eventName"], "Key": f"{bucket}/{key}", "Records": [first, *more]}
    ).encode()
