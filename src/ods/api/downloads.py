"""Short-lived read access to a dataset version's Parquet: signed, expiring download URLs.

On MinIO/S3 the object store presigns a GET itself. The local store has no such thing, so ``ods serve``
hands out ``/api/v1/downloads/{token}`` URLs and serves them: the token carries the object key and an
expiry, signed with HMAC-SHA256 under a per-server secret (``ODS_API__SIGNING_KEY``, or a random key made
when the app is built and kept only in memory). The token is the credential: the route needs no API key,
so the URL can be handed to a tool that has none, until it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import JSONResponse, StreamingResponse

from ods.adapters.object_store import ObjectStore
from ods.api.deps import ServerResources
from ods.api.envelope import UNAUTHENTICATED, ErrorEnvelope, ErrorKind, error_response
from ods.errors import SettingsError
from ods.factories import build_object_store
from ods.settings import Settings

DOWNLOADS_PREFIX = "/api/v1/downloads/"
MIN_KEY_CHARS = 32
CHUNK_BYTES = 1024 * 1024
FORBIDDEN = ErrorKind(40301, 403, "invalid_request_error")
"""A download token that was not signed by this server (forged or altered)."""
# The shape of a token (no secret): base64url payload, '.', base64url of a 32-byte MAC.
_SIGNED_TOKEN_SHAPE = r"^[A-Za-z0-9_-]{4,2048}\.[A-Za-z0-9_-]{43}$"  # noqa: S105

router = APIRouter(prefix="/api/v1/downloads", tags=["datasets"])


class DownloadRefused(Exception):
    """A token that grants nothing: ``kind`` says whether it expired (401) or was not ours (403)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class DownloadSigner:
    """Signs and checks download tokens: ``base64url(expiry "\\n" key) "." base64url(HMAC-SHA256)``."""

    secret: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadSigner:
        """The signer of ``ODS_API__SIGNING_KEY``, or of a random key when it is unset."""
        configured = settings.api.signing_key
        if configured is None:
            return cls(secrets.token_bytes(32))
        value = configured.get_secret_value()
        if len(value) < MIN_KEY_CHARS:
            raise SettingsError(
                f"ODS_API__SIGNING_KEY holds {len(value)} characters; use at least {MIN_KEY_CHARS} "
                '(e.g. python -c "import secrets; print(secrets.token_urlsafe(32))") or unset it'
            )
        return cls(value.encode("utf-8"))

    def sign(self, key: str, expires_at: int) -> str:
        """A token for object ``key`` that is good until ``expires_at`` (Unix seconds)."""
        payload = f"{expires_at}\n{key}".encode()
        return f"{_encode(payload)}.{_encode(self._mac(payload))}"

    def verify(self, token: str, now: float | None = None) -> str:
        """The object key ``token`` grants, if it is ours and unexpired; else :class:`DownloadRefused`."""
        encoded, _, mac = token.partition(".")
        try:
            payload, given = _decode(encoded), _decode(mac)
        except (binascii.Error, ValueError):
            raise DownloadRefused(FORBIDDEN, _NOT_OURS) from None
        # The MAC is compared in constant time; its text must be the canonical encoding too (base64 ignores
        # the low bits of a last character), so exactly one token grants each key and expiry.
        if not hmac.compare_digest(given, self._mac(payload)) or _encode(given) != mac:
            raise DownloadRefused(FORBIDDEN, _NOT_OURS)
        expiry, _, key = payload.decode("utf-8").partition("\n")
        if int(expiry) <= (time.time() if now is None else now):
            raise DownloadRefused(
                UNAUTHENTICATED,
                "this download URL has expired; ask for a new one with POST /api/v1/datasets/{name}/credentials",
            )
        return key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, payload, hashlib.sha256).digest()


_NOT_OURS = (
    "this download URL was not signed by this server (altered, or signed before a restart with no "
    "ODS_API__SIGNING_KEY); ask for a new one with POST /api/v1/datasets/{name}/credentials"
)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def download_signer(request: Request) -> DownloadSigner:
    """The signer of the app serving ``request`` (made once, when the first URL is signed or checked)."""
    state = request.app.state
    signer: DownloadSigner | None = getattr(state, "download_signer", None)
    if signer is None:
        resources = state.resources
        signer = state.download_signer = DownloadSigner.from_settings(resources.settings)
    return signer


ServerSigner = Annotated[DownloadSigner, Depends(download_signer)]


def _stream(store: ObjectStore, key: str) -> Iterator[bytes]:
    with store.filesystem().open_input_stream(key) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorEnvelope, "description": "The URL has expired (code 40101)."},
    403: {"model": ErrorEnvelope, "description": "The URL was not signed by this server (code 40301)."},
}


@router.get(
    "/{token}",
    summary="Download a dataset version's Parquet through a signed URL",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/vnd.apache.parquet": {}}}, **_REFUSED},
)
def download(
    token: Annotated[
        str, Path(pattern=_SIGNED_TOKEN_SHAPE, description="The signed token a credentials request answered.")
    ],
    resources: ServerResources,
    signer: ServerSigner,
) -> Any:
    """Stream the object the token grants, as stored. No API key: the unexpired token is the credential."""
    path = DOWNLOADS_PREFIX + token
    try:
        key = signer.verify(token)
    except DownloadRefused as refused:
        return _refusal(path, refused)
    store = build_object_store(resources.settings)
    size = store.stat(key).size
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"',
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(
        _stream(store, key), media_type="application/vnd.apache.parquet", headers=headers
    )


def _refusal(path: str, refused: DownloadRefused) -> JSONResponse:
    return error_response(path, refused.kind, str(refused))
