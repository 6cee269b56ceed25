"""Object stores: the local directory store and the S3 store, behind one protocol.

``MinioObjectStore`` is imported on first use, so importing this package never imports the ``minio`` SDK.
``ods.factories.build_object_store`` builds the one the settings name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ods.adapters.object_store.base import ObjectInfo, ObjectStore, key_of
from ods.adapters.object_store.local import LocalObjectStore

if TYPE_CHECKING:
    from ods.adapters.object_store.minio_store import MinioObjectStore

__all__ = ["LocalObjectStore", "MinioObjectStore", "ObjectInfo", "ObjectStore", "key_of"]


def __getattr__(name: str) -> Any:
    if name == "MinioObjectStore":
        from ods.adapters.object_store.minio_store import MinioObjectStore

        return MinioObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
