"""The console session's secrets: the cookie's random value, the row id and seal key derived from it, and
the session's CSRF token.

The browser holds the only copy of a session's random value. The catalog keys the session by its SHA-256
(:func:`session_id`) and keeps the session's data encrypted (JWE, ``dir`` + A256GCM, joserfc) with a key
derived from the value by HKDF (:func:`seal`), so the catalog alone neither opens a session nor reveals a
token. The CSRF token is an HMAC of the value: the page carries it, a cross-site form cannot know it, and
the server recomputes it instead of storing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

SECRET_BYTES: Final = 32
MAX_SECRET_CHARS: Final = 128
_SEAL_HEADER: Final = {"alg": "dir", "enc": "A256GCM"}


class SealBroken(ValueError):
    """A sealed session could not be opened with the cookie's value (wrong value or altered data)."""


def new_session_secret() -> str:
    """A fresh random cookie value (256 bits, URL-safe)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def is_secret_shaped(value: str) -> bool:
    """Whether ``value`` could be a cookie value this module made (length and alphabet), before any lookup."""
    return 0 < len(value) <= MAX_SECRET_CHARS and all(c.isalnum() or c in "-_" for c in value)


def session_id(secret: str) -> str:
    """The catalog's key of the session whose cookie holds ``secret``: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def csrf_token(secret: str) -> str:
    """The CSRF token of the session whose cookie holds ``secret`` (HMAC-SHA256, hex)."""
    return hmac.new(secret.encode("ascii"), b"ods console csrf", hashlib.sha256).hexdigest()


def csrf_matches(secret: str, sent: str | None) -> bool:
    """Whether ``sent`` is the CSRF token of ``secret`` (compared in constant time)."""
    return sent is not None and hmac.compare_digest(
        csrf_token(secret).encode(), sent.encode("utf-8", "replace")
    )


def seal(secret: str, payload: dict[str, Any]) -> str:
    """``payload`` (JSON) encrypted with the key derived from ``secret``."""
    return jwe.encrypt_compact(_SEAL_HEADER, json.dumps(payload).encode("utf-8"), _key(secret))


def unseal(secret: str, sealed: str) -> dict[str, Any]:
    """The payload :func:`seal` encrypted; SealBroken when ``secret`` is not the one or the data changed."""
    try:
        opened = jwe.decrypt_compact(sealed, _key(secret), algorithms=["dir", "A256GCM"])
        payload = json.loads(opened.plaintext or b"")
    except (JoseError, ValueError, TypeError):
        raise SealBroken("the session's sealed data does not open with this cookie") from None
    if not isinstance(payload, dict):
        raise SealBroken("the session's sealed data is not an object")
    return payload


def _key(secret: str) -> OctKey:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ods console session seal").derive(
        secret.encode("ascii")
    )
    return OctKey.import_key(derived)
