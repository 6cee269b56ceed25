"""Validation of object keys that come from outside (file names, bucket listings, user input).

A key is a '/'-separated relative name. Keys are checked before they touch a local path or a bucket,
so a hostile name can never escape the store's root.
"""

from __future__ import annotations

import unicodedata

from ods.errors import InvalidObjectKeyError

MAX_KEY_BYTES = 1024
_HINT = "use a relative key such as 'raw/sales.csv'"
_SHOWN_NAME_CHARS = 120
# Characters a terminal or a log reader may act on, or that do not show: controls (C0, DEL, C1), format
# characters (bidirectional overrides, zero-width), line and paragraph separators, surrogates (bytes of a
# file name that were not UTF-8 arrive as U+DC80-U+DCFF), private-use and unassigned code points.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_REFUSED_CATEGORIES = {
    "Cc": "control character",
    "Cs": "lone surrogate (not UTF-8)",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


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


def printable_name(name: str) -> str:
    """``name`` with every character that would not print as itself escaped; others, accents included, kept.

    ``\\n \\r \\t \\\\``, ``\\xNN`` for the other C0 controls and DEL, ``\\xNN`` (NN >= 80) for a byte of a
    file name that was not UTF-8, ``\\uNNNN`` / ``\\UNNNNNNNN`` for any other unprintable code point (C1
    controls, bidirectional overrides, separators). Distinct names stay distinct, so the escaped form can
    serve as a printable identity of a name that cannot be used as it is.
    """
    return "".join(_escaped(character) for character in name)


def printable_text(text: str) -> str:
    """``text`` (a URI, a reason) for a terminal: like :func:`printable_name`, but backslashes are kept, so
    text that already holds escaped names (a quarantine reason) reads the same."""
    return "".join("\\" if character == "\\" else _escaped(character) for character in text)


def document_name_problem(name: str, *, max_bytes: int = MAX_KEY_BYTES) -> str | None:
    """Why ``name`` (a file's path in its folder, or an object key) cannot name a document, or None.

    Refused: bytes that are not UTF-8, control characters (C0, DEL, C1: a newline or an escape sequence
    in a name reaches logs, terminals and filter expressions), line or paragraph separators, and names
    over ``max_bytes`` of UTF-8. The sentence names the character, its 1-based position and the name in
    its printable form (:func:`printable_name`).
    """
    shown = printable_name(name)
    if len(shown) > _SHOWN_NAME_CHARS:
        shown = shown[:_SHOWN_NAME_CHARS] + "..."
    for position, character in enumerate(name, start=1):
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:
            return f'name "{shown}" is not valid UTF-8: byte {_escaped(character)} at character {position}'
        what = _REFUSED_CATEGORIES.get(unicodedata.category(character))
        if what is not None:
            return f'name "{shown}" has {what} {_escaped(character)} (U+{code:04X}) at character {position}'
    size = len(name.encode("utf-8"))
    if size > max_bytes:
        return f'name "{shown}" is {size:,} bytes long, over the limit of {max_bytes:,} bytes'
    return None


def _escaped(character: str) -> str:
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogate escape of a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if unicodedata.category(character) in _UNPRINTABLE_CATEGORIES:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return character
