"""Tenant-qualified storage names: the default tenant keeps the names made before tenants existed,
every other tenant gets its own object-store prefix and Milvus collections."""

from __future__ import annotations

import re

import pytest

from ods.adapters.milvus.schema import collection_name
from ods.domain.bucket_diff import WatchLayout
from ods.domain.identity import InvalidTenantError
from ods.domain.tenant_storage import knowledge_base_documents_prefix, tenant_key_prefix

LAYOUT = WatchLayout(raw_prefix="raw/", documents_prefix="docs/")


def test_the_default_tenant_keeps_its_prefixes_and_others_get_their_own() -> None:
    assert tenant_key_prefix("default") == ""
    assert knowledge_base_documents_prefix("handbook", "default", LAYOUT) == "docs/handbook/"
    assert knowledge_base_documents_prefix("handbook", "acme", LAYOUT) == "tenants/acme/docs/handbook/"
    with pytest.raises(InvalidTenantError):
        tenant_key_prefix("../globex")


def test_collections_are_per_tenant_and_valid_milvus_names() -> None:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    default = collection_name("handbook", model)
    assert collection_name("handbook", model, "default") == default  # existing collections keep their name
    names = {
        default,
        collection_name("handbook", model, "acme"),
        collection_name("handbook", model, "globex"),
    }
    assert len(names) == 3
    for name in names:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,254}", name), name
    assert collection_name("handbook", model, "acme").startswith("kb_t_acme__handbook__")
