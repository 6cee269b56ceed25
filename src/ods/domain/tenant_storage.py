"""Where a tenant's objects live in the object store: the default tenant's where they were before
tenants existed (no data moves), every other tenant's under ``tenants/<tenant>/``, so a store credential
or a bucket policy can be scoped to one tenant's prefix and no listing of one tenant's folder can reach
another's. (The Milvus side is ``ods.adapters.milvus.schema.collection_name``.) Every key a dataset's
objects get (Parquet versions, quarantined rows, cards, the specs the API stores for a run) is built here;
readers follow the URI the catalog records for a version, so a version keeps its key wherever it was made."""

from __future__ import annotations

from typing import Final

from ods.domain.bucket_diff import WatchLayout, documents_prefix_of
from ods.domain.identity import DEFAULT_TENANT, check_tenant

TENANTS_PREFIX: Final = "tenants/"
DATASETS_FOLDER: Final = "datasets"
API_SPECS_FOLDER: Final = "api/specs"
"""Where the API stores a registration's spec for the prepare-dataset deployment's worker to read
(outside the watched prefixes, so no watcher starts a second run for it)."""


def tenant_key_prefix(tenant: str) -> str:
    """The key prefix of ``tenant``'s objects: empty for the default tenant, ``tenants/<tenant>/`` else."""
    return "" if tenant == DEFAULT_TENANT else f"{TENANTS_PREFIX}{check_tenant(tenant)}/"


def knowledge_base_documents_prefix(kb: str, tenant: str, layout: WatchLayout) -> str:
    """The key prefix of the documents uploaded to ``tenant``'s knowledge base ``kb``: the watched
    ``docs/<kb>/`` for the default tenant, ``tenants/<tenant>/docs/<kb>/`` for the others (outside the
    watched prefixes: their uploads start their ingest through the API)."""
    return tenant_key_prefix(tenant) + documents_prefix_of(kb, layout)


def dataset_key_prefix(name: str, tenant: str) -> str:
    """The folder of ``tenant``'s dataset ``name`` (no trailing '/'): ``datasets/<name>`` for the default
    tenant, ``tenants/<tenant>/datasets/<name>`` for the others. Versions are ``<folder>/<sha256>.parquet``."""
    return f"{tenant_key_prefix(tenant)}{DATASETS_FOLDER}/{name}"


def quarantine_key_prefix(name: str, tenant: str) -> str:
    """The folder of the failing rows of ``tenant``'s dataset ``name``'s rejected versions."""
    return f"{dataset_key_prefix(name, tenant)}/quarantine"


def dataset_card_key(name: str, tenant: str, version: int) -> str:
    """The key of the card of version ``version`` of ``tenant``'s dataset ``name``, beside its data."""
    return f"{dataset_key_prefix(name, tenant)}/cards/v{version}.md"


def dataset_spec_key(name: str, tenant: str, digest: str) -> str:
    """The key of a spec of ``tenant``'s dataset ``name`` stored for a run, named by ``digest`` (a prefix
    of its sha256) so the same text is stored once."""
    return f"{tenant_key_prefix(tenant)}{API_SPECS_FOLDER}/{name}/{digest}.yaml"
