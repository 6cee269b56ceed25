"""API keys of `ods serve`: how one is made, shown, stored and checked, and how long it lives.

A key is ``ods_`` followed by 43 URL-safe characters (32 random bytes), so a leaked one is recognisable in
a log or a repository scan. The catalog keeps only its SHA-256 (a 256-bit random key needs no slow hash:
nothing is left to guess from the digest) and its first :data:`DISPLAY_CHARS` characters, the prefix that
lists and lookups show. Checking a key finds the rows with its prefix and compares digests in constant
time. Nothing here prints or logs a key: the CLI shows it once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from ods.domain.identity import AuthenticationRefused
from ods.errors import OdsError

KEY_PREFIX = "ods_"
DISPLAY_CHARS = 12
"""Characters of a key kept in the clear and shown by `ods keys list` (``ods_`` and 8 random ones)."""
_RANDOM_BYTES = 32
_KEY_PATTERN = re.compile(r"ods_[A-Za-z0-9_-]{43}")
_EXPIRY = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
MAX_EXPIRY = timedelta(days=3650)
EXPIRY_RULE = "a whole number of minutes, hours or days, e.g. 90m, 12h or 30d (at most 3650d)"


class InvalidExpiryError(OdsError, ValueError):
    """An API key's lifetime (``--expires``) is not a number of minutes, hours or days."""


class ApiKeyRefused(AuthenticationRefused):
    """A request's API key is missing, unknown, revoked or expired (HTTP 401, code 40101). The message
    names the key by its name at most, never by any of its characters."""


class ApiKeyRevokedOrExpired(ApiKeyRefused):
    """A request's API key was made here but is revoked or expired: refused even where a request without
    a key would pass, so its holder learns at once."""


class ApiKeyExistsError(OdsError):
    """An API key of that name exists already (revoked ones keep their names)."""


@dataclass(frozen=True)
class NewApiKey:
    """A key as made: the secret (shown once, never stored), its digest and its display prefix."""

    secret: str
    digest: str
    prefix: str


def new_api_key() -> NewApiKey:
    """A fresh random key with its digest and display prefix."""
    secret = KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)
    return NewApiKey(secret=secret, digest=digest_api_key(secret), prefix=display_prefix(secret))


def digest_api_key(key: str) -> str:
    """Hex SHA-256 of ``key``: what the catalog stores in place of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(key: str) -> str:
    """The first characters of ``key``: enough to tell keys apart in a list, useless to an attacker."""
    return key[:DISPLAY_CHARS]


def is_api_key_shaped(text: str) -> bool:
    """Whether ``text`` has the form of a key this module makes (checked before any lookup)."""
    return _KEY_PATTERN.fullmatch(text) is not None


def digests_match(key: str, stored_digest: str) -> bool:
    """Whether ``key`` hashes to ``stored_digest``, compared in constant time."""
    return hmac.compare_digest(digest_api_key(key), stored_digest)


def parse_expiry(text: str) -> timedelta:
    """The lifetime ``text`` names (``90m``, ``12h``, ``30d``); InvalidExpiryError naming it otherwise."""
    match = _EXPIRY.fullmatch(text.strip().lower())
    lifetime = int(match.group(1)) * _UNITS[match.group(2)] if match else None
    if lifetime is None or lifetime > MAX_EXPIRY:
        shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "…"
        raise InvalidExpiryError(f"key lifetime {shown} is not valid: use {EXPIRY_RULE}")
    return lifetime


def key_state(*, revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``: what a stored key is worth at ``now``."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"
