"""Who owns what the CLI and the flows create: ``ODS_OWNER`` (default ``local:<OS user name>``) is
recorded as the owner of the datasets, models and knowledge bases they make, so a caller of the API whose
subject it names may edit them as their owner; `ods serve`'s own catalog stamps no one.

A real server (uvicorn, loopback) over a local platform (SQLite catalog, local object store); the dataset
is prepared by the stages the prepare-dataset flow runs, with the CLI's catalog.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import httpx
import pytest

from ods.errors import SettingsError
from ods.factories import build_object_store, open_catalog
from ods.settings import load_settings
from ods.stages.api_keys import create_api_key
from ods.stages.prepare import load_spec, prepare_version
from tests.support.api_envelope import data, refused
from tests.support.api_server import running_api

ORDERS_CSV = b"id,status\n1,paid\n2,pending\n"
SPEC = "name: orders\nsource: {uri: orders.csv}\nexpectations:\n  - not_null: {column: id}\n"
FORBIDDEN = 40301


def test_ods_owner_defaults_to_the_local_user_and_is_checked(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path).owner == f"local:{getpass.getuser()}"
    assert load_settings(home=tmp_path, owner="etl").owner == "etl"
    with pytest.raises(SettingsError, match="ODS_OWNER"):
        load_settings(home=tmp_path, owner="  ")


def test_what_the_cli_creates_is_owned_by_ods_owner_and_the_server_stamps_no_one(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "ods-home", owner="etl")
    with open_catalog(settings) as catalog:
        catalog.add_model_version(
            "ranker", trainer="sklearn", params={}, metrics={}, artifact_uri="file:///nowhere/ranker"
        )
        catalog.ensure_knowledge_base(
            "handbook", embedding_model="mini", embedding_dim=4, collection_name="kb_handbook"
        )
        assert catalog.ensure_model("ranker").owner == "etl"  # found, not created
        assert catalog.get_knowledge_base("handbook").owner == "etl"
        assert catalog.ensure_dataset("named", owner="someone").owner == "someone"  # a named owner wins
    with open_catalog(settings, stamp_owner=False) as server_catalog:
        server_catalog.add_model_version(
            "scorer", trainer="sklearn", params={}, metrics={}, artifact_uri="file:///nowhere/scorer"
        )
        assert server_catalog.ensure_model("scorer").owner is None


def test_an_api_caller_named_by_ods_owner_edits_what_the_cli_prepared(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "ods-home", owner="etl")
    (tmp_path / "orders.csv").write_bytes(ORDERS_CSV)
    (tmp_path / "orders.yaml").write_text(SPEC)
    store = build_object_store(settings)
    with open_catalog(settings) as catalog:
        prepared = prepare_version(
            catalog, store, settings, load_spec(str(tmp_path / "orders.yaml"), settings)
        )
        assert prepared.status == "registered"
        assert catalog.get_dataset("orders").owner == "etl"
        keys = {
            name: create_api_key(catalog, name, roles=["data_engineer"], tenant="default").key
            for name in ("etl", "other")
        }
    with running_api(settings) as api:
        for name, key in keys.items():
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=api.base_url, timeout=60, headers=headers) as client:
                edit = client.put("/api/v1/datasets/orders", json={"description": f"by {name}"})
                if name == "etl":
                    assert data(edit)["owner"] == "etl"
                else:
                    refused(edit, 403, FORBIDDEN)
