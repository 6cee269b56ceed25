"""Validation of object keys that come from outside (file names, bucket listings, user input).

A key is a '/'-separated relative name. Keys are checked before they touch a local path or a bucket,
so a hostile name can never escape the store's root.
"""

from __future__ import annotations

import unicodedata

from ods.errors import InvalidObjectKeyError

MAX_KEY_BYTES = 1024
_HINT = "use a relative key such as 'raw/sales.csv'"


def validate_object_key(key: str, *, allow_prefix: bool = False) -> str:
    """Return ``key`` unchanged if it is safe, else raise :class:`InvalidObjectKeyError`.

    With ``allow_prefix`` the empty string and a trailing '/' are accepted (listing prefixes).
    """
    if not isinstance(key, str):
        raise InvalidObjectKeyError(f"object key must be a string, got {type(key).__name__}")
    if key == "":
        if allow_prefix:
            return key
        raise InvalidObjectKeyError(f"object key is empty; {_HINT}")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidObjectKeyError(f"object key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes")
    bad_char = next((ch for ch in key if unicodedata.category(ch) in ("Cc", "Cs") or ch == "\x7f"), None)
    if bad_char is not None:
        raise InvalidObjectKeyError(f"object key {key!r} contains control character {bad_char!r}; {_HINT}")
    if "\\" in key:
        raise InvalidObjectKeyError(f"object key {key!r} contains a backslash; separate parts with '/'")
    if key.startswith("/"):
        raise InvalidObjectKeyError(f"object key {key!r} is an absolute path; {_HINT}")
    if len(key) >= 2 and key[1] == ":" and key[0].isalpha():
        raise InvalidObjectKeyError(f"object key {key!r} looks like a drive path; {_HINT}")
    parts = key.split("/")
    if allow_prefix and parts[-1] == "":
        parts = parts[:-1]
    for part in parts:
        if part in ("..", "."):
            raise InvalidObjectKeyError(f"object key {key!r} contains a {part!r} segment; {_HINT}")
        if part == "":
            raise InvalidObjectKeyError(
                f"object key {key!r} contains an empty segment ('//' or a trailing '/')"
            )
    return key


def join_key(*parts: str) -> str:
    """Join key parts with '/', validating the result."""
    return validate_object_key("/".join(part.strip("/") for part in parts if part))
