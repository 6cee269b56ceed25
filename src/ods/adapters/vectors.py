"""The vector index: Milvus (a Milvus Lite file by default, a Milvus server by URI)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ods.errors import OdsError

if TYPE_CHECKING:
    from pymilvus import MilvusClient


class VectorIndexError(OdsError):
    """Milvus cannot be reached or refused an operation."""


def is_server_uri(uri: str) -> bool:
    """Whether ``uri`` names a Milvus server rather than a Milvus Lite file."""
    return uri.startswith(("http://", "https://", "tcp://", "unix:"))


def open_milvus_client(uri: str, *, token: str | None = None, timeout_s: float = 10.0) -> MilvusClient:
    """Connect to Milvus; a Lite file's parent directory is created first."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    if not is_server_uri(uri):
        if not uri.endswith(".db"):
            raise VectorIndexError(f"Milvus Lite file {uri!r} must end in '.db'; set ODS_MILVUS__URI")
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, token=token or "", timeout=timeout_s)
    except MilvusException as error:
        raise VectorIndexError(
            f"cannot open Milvus at {uri}: {error.message}; check ODS_MILVUS__URI and that Milvus is running"
        ) from None
