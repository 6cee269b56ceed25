"""The check_health flow runs on the Prefect test server and reports component state."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.check_health import check_health
from ods.errors import OdsError
from ods.settings import get_settings


def test_check_health_reports_every_component_ok_on_local_profile(ods_home: Path) -> None:
    results = check_health()

    assert {result.component for result in results} == {
        "catalog",
        "object_store",
        "milvus",
        "knowledge_bases",
        "embedding_model",
        "llm",
        "prefect_api",
    }
    assert all(result.ok for result in results), results
    assert (ods_home / "catalog.db").is_file()


def test_check_health_fails_the_run_naming_the_broken_component(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODS_CATALOG__URL", "postgresql+psycopg://nobody@127.0.0.1:1/ods")
    monkeypatch.setenv("ODS_CATALOG__CONNECT_TIMEOUT_S", "2")
    get_settings.cache_clear()

    with pytest.raises(OdsError, match=r"unhealthy components: catalog \(cannot open catalog"):
        check_health()
