"""`ods init`: make the configured home, catalog, object store and vector index ready (idempotent)."""

from __future__ import annotations

from ods.settings import Settings, get_settings, mask_url


def initialise(settings: Settings | None = None) -> list[str]:
    """Prepare every stateful component and describe what is ready, one line each."""
    from ods.adapters.catalog import Catalog
    from ods.adapters.object_store import build_object_store
    from ods.adapters.vectors import open_milvus_client

    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    lines = [f"home {settings.home.resolve()} (profile {settings.profile})"]

    catalog = Catalog.open(
        settings.catalog_url, echo=settings.catalog.echo, connect_timeout_s=settings.catalog.connect_timeout_s
    )
    try:
        lines.append(f"catalog {mask_url(settings.catalog_url)} at revision {catalog.migrate()}")
    finally:
        catalog.close()

    store = build_object_store(settings)
    store.ensure_ready()
    lines.append(f"object store {store.location}")

    token = settings.milvus.token.get_secret_value() if settings.milvus.token else None
    open_milvus_client(settings.milvus_uri, token=token).close()
    lines.append(f"vector index {settings.milvus_uri}")
    return lines
