"""Content identities: every id the platform derives comes from content, never from a counter."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import BinaryIO

CHUNK_BYTES = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hex sha256 and byte count of everything left in ``stream``."""
    digest = hashlib.sha256()
    size = 0
    while block := stream.read(CHUNK_BYTES):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def stable_id(*parts: str | int, length: int = 32) -> str:
    """A deterministic hex id for a tuple of values (e.g. kb, URI, sha256, chunk index).

    Parts are length-prefixed before hashing so ('ab', 'c') and ('a', 'bc') differ.
    """
    digest = hashlib.sha256()
    for part in parts:
        encoded = str(part).encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()[:length]


def iter_chunks(stream: BinaryIO) -> Iterable[bytes]:
    """Read ``stream`` in fixed-size blocks."""
    while block := stream.read(CHUNK_BYTES):
        yield block
