"""Where a tenant's objects live in the object store: the default tenant's where they were before
tenants existed (no data moves), every other tenant's under ``tenants/<tenant>/``, so a store credential
or a bucket policy can be scoped to one tenant's prefix and no listing of one tenant's folder can reach
another's. (The Milvus side is ``ods.adapters.milvus.schema.collection_name``.)"""

from __future__ import annotations

from typing import Final

from ods.domain.bucket_diff import WatchLayout, documents_prefix_of
from ods.domain.identity import DEFAULT_TENANT, check_tenant

TENANTS_PREFIX: Final = "tenants/"


def tenant_key_prefix(tenant: str) -> str:
    """The key prefix of ``tenant``'s objects: empty for the default tenant, ``tenants/<tenant>/`` else."""
    return "" if tenant == DEFAULT_TENANT else f"{TENANTS_PREFIX}{check_tenant(tenant)}/"


def knowledge_base_documents_prefix(kb: str, tenant: str, layout: WatchLayout) -> str:
    """The key prefix of the documents uploaded to ``tenant``'s knowledge base ``kb``: the watched
    ``docs/<kb>/`` for the default tenant, ``tenants/<tenant>/docs/<kb>/`` for the others (outside the
    watched prefixes: their uploads start their ingest through the API)."""
    return tenant_key_prefix(tenant) + documents_prefix_of(kb, layout)
