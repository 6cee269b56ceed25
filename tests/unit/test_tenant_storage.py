"""Tenant-qualified storage names: the default tenant keeps the names made before tenants existed,
every other tenant gets its own object-store prefix and Milvus collections."""

from __future__ import annotations

import re

import pytest

from ods.adapters.milvus.schema import collection_name
from ods.domain.bucket_diff import WatchLayout
from ods.domain.identity import InvalidTenantError
from ods.domain.tenant_storage import (
    dataset_card_key,
    dataset_key_prefix,
    dataset_spec_key,
    knowledge_base_documents_prefix,
    quarantine_key_prefix,
    tenant_key_prefix,
)

LAYOUT = WatchLayout(raw_prefix="raw/", documents_prefix="docs/")


def test_the_default_tenant_keeps_its_prefixes_and_others_get_their_own() -> None:
    assert tenant_key_prefix("default") == ""
    assert knowledge_base_documents_prefix("handbook", "default", LAYOUT) == "docs/handbook/"
    assert knowledge_base_documents_prefix("handbook", "acme", LAYOUT) == "tenants/acme/docs/handbook/"
    with pytest.raises(InvalidTenantError):
        tenant_key_prefix("../globex")


def test_a_datasets_objects_are_under_its_tenants_prefix_and_the_default_keeps_its_keys() -> None:
    assert dataset_key_prefix("sales", "default") == "datasets/sales"
    assert quarantine_key_prefix("sales", "default") == "datasets/sales/quarantine"
    assert dataset_card_key("sales", "default", 3) == "datasets/sales/cards/v3.md"
    assert dataset_spec_key("sales", "default", "ab12") == "api/specs/sales/ab12.yaml"
    assert dataset_key_prefix("sales", "acme") == "tenants/acme/datasets/sales"
    assert quarantine_key_prefix("sales", "acme") == "tenants/acme/datasets/sales/quarantine"
    assert dataset_card_key("sales", "acme", 3) == "tenants/acme/datasets/sales/cards/v3.md"
    assert dataset_spec_key("sales", "acme", "ab12") == "tenants/acme/api/specs/sales/ab12.yaml"
    with pytest.raises(InvalidTenantError):
        dataset_key_prefix("sales", "ACME/../x")


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
