"""`ods events bridge`: MinIO bucket-notification webhooks in, ods.object.created|deleted Prefect events out.

MinIO POSTs one JSON document per notification (``{"EventName": ..., "Key": "bucket/key", "Records":
[{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": ...}, "object": {"key": <URL-encoded>,
"eTag": ..., "size": ...}}}]}``). Each record under a watched prefix becomes the same event, with the same
deterministic id, that the polling watcher emits for that object version, so the watcher's later pass is
a duplicate Prefect drops. A body that is not such a document is answered 400 and emits nothing.

The app takes its emitter as an argument (Prefect's ``emit_event`` in production, a list in tests).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ods.domain.bucket_diff import ChangeAction, ObjectChange, WatchLayout, classify_key, normalize_etag
from ods.errors import OdsError
from ods.stages.watch import EventEmitter, object_event, s3_uri

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/minio/events"
MAX_BODY_BYTES = 1024 * 1024
_ACTIONS: dict[str, ChangeAction] = {"ObjectCreated": "created", "ObjectRemoved": "deleted"}


class NotificationError(OdsError):
    """A webhook body that is not a MinIO bucket notification; the message says which part is wrong."""


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge needs: the watched layout and the optional shared secret."""

    layout: WatchLayout
    token: str | None = None


def parse_minio_notification(body: bytes, layout: WatchLayout) -> list[ObjectChange]:
    """The object changes a MinIO notification body announces, for keys under the watched prefixes.

    Records of other event kinds (e.g. ``s3:ObjectAccessed:Get``) and keys outside the watched prefixes
    are skipped; anything malformed raises :class:`NotificationError` before any change is returned.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotificationError(f"body is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise NotificationError('body is not a MinIO notification: expected an object with a "Records" list')
    changes: list[ObjectChange] = []
    for index, record in enumerate(document["Records"]):
        change = _parse_record(record, index, layout)
        if change is not None:
            changes.append(change)
    return changes


def _parse_record(record: Any, index: int, layout: WatchLayout) -> ObjectChange | None:
    where = f"Records[{index}]"
    if not isinstance(record, dict):
        raise NotificationError(f"{where} is not an object")
    name = record.get("eventName")
    if not isinstance(name, str) or not name:
        raise NotificationError(f"{where}.eventName is missing or not a string")
    action = _ACTIONS.get(name.removeprefix("s3:").split(":", 1)[0])
    s3 = record.get("s3")
    bucket = _get(s3, "bucket", "name")
    obj = _get(s3, "object")
    key = _get(obj, "key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise NotificationError(f"{where}.s3 must hold bucket.name and object.key strings")
    etag, size = obj.get("eTag", ""), obj.get("size")
    if not isinstance(etag, str) or not (
        size is None or (isinstance(size, int) and not isinstance(size, bool))
    ):
        raise NotificationError(f"{where}.s3.object: eTag must be a string and size an integer")
    if action is None:
        return None
    key = unquote_plus(key)
    role = classify_key(key, layout)
    if role is None:
        return None
    return ObjectChange(action, bucket, key, normalize_etag(etag), size, role)


def _get(value: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def create_bridge_app(config: BridgeConfig, emit: EventEmitter) -> Starlette:
    """The bridge's ASGI app: ``POST /minio/events`` (the webhook) and ``GET /health``."""

    async def webhook(request: Request) -> Response:
        if not _authorized(request, config.token):
            return JSONResponse({"error": "missing or wrong Authorization: Bearer token"}, status_code=401)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        try:
            changes = parse_minio_notification(body, config.layout)
        except NotificationError as error:
            logger.warning("rejected webhook body: %s", error)
            return JSONResponse({"error": str(error)}, status_code=400)
        emitted = []
        for change in changes:
            event = object_event(change, _s3_resolver(change.bucket))
            emit(event)
            emitted.append({"event": event.event, "key": change.key, "id": str(event.id)})
        return JSONResponse({"emitted": emitted})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/health", health, methods=["GET", "HEAD"]),
        ]
    )


def _s3_resolver(bucket: str) -> Callable[[str], str]:
    return lambda key: s3_uri(bucket, key)


def serve_bridge(config: BridgeConfig, emit: EventEmitter, host: str, port: int) -> None:
    """Run the bridge with uvicorn until interrupted (the token is never logged)."""
    import uvicorn

    uvicorn.run(create_bridge_app(config, emit), host=host, port=port, log_level="info")
