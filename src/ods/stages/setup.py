"""`ods init`: make the configured home, catalog, object store and vector index ready (idempotent)."""

from __future__ import annotations

from ods.settings import Settings, get_settings, mask_url


def initialise(settings: Settings | None = None) -> list[str]:
    """Prepare every stateful component and describe what is ready, one line each."""
    from ods.factories import build_object_store, open_catalog, open_milvus

    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    lines = [f"home {settings.home.resolve()} (profile {settings.profile})"]

    catalog = open_catalog(settings)
    try:
        lines.append(f"catalog {mask_url(settings.catalog_url)} at revision {catalog.migrate()}")
    finally:
        catalog.close()

    store = build_object_store(settings)
    store.ensure_ready()
    lines.append(f"object store {store.location}")

    open_milvus(settings).close()
    lines.append(f"vector index {settings.milvus_uri}")
    return lines
