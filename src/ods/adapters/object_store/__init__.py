"""Object stores: the local directory store and the S3 store, behind one protocol.

``MinioObjectStore`` is imported on first use, so importing this package never imports the ``minio`` SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ods.adapters.object_store.base import ObjectInfo, ObjectStore
from ods.adapters.object_store.local import LocalObjectStore
from ods.errors import SettingsError

if TYPE_CHECKING:
    from ods.adapters.object_store.minio_store import MinioObjectStore
    from ods.settings import Settings

__all__ = ["LocalObjectStore", "MinioObjectStore", "ObjectInfo", "ObjectStore", "build_object_store"]


def build_object_store(settings: Settings) -> ObjectStore:
    """The object store the settings name (``ODS_OBJECT_STORE__KIND``); nothing is contacted yet."""
    config = settings.object_store
    if config.kind == "local":
        return LocalObjectStore(settings.object_store_root)
    from ods.adapters.object_store.minio_store import MinioObjectStore

    if config.endpoint is None or config.access_key is None or config.secret_key is None:
        raise SettingsError(
            "ODS_OBJECT_STORE__KIND=minio needs ODS_OBJECT_STORE__ENDPOINT, ODS_OBJECT_STORE__ACCESS_KEY "
            "and ODS_OBJECT_STORE__SECRET_KEY"
        )
    return MinioObjectStore(
        config.endpoint,
        config.bucket,
        config.access_key.get_secret_value(),
        config.secret_key.get_secret_value(),
        secure=config.secure,
        region=config.region,
    )


def __getattr__(name: str) -> Any:
    if name == "MinioObjectStore":
        from ods.adapters.object_store.minio_store import MinioObjectStore

        return MinioObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
