"""What flow and task runs persist is JSON, even where Prefect's default serializer is pickle (its default).

The flows and tasks name the JSON serializer themselves, so a worker or serve process whose environment
lacks PREFECT_RESULTS_DEFAULT_SERIALIZER=json stores no pickle either.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.settings import (
    PREFECT_RESULTS_DEFAULT_SERIALIZER,
    PREFECT_RESULTS_LOCAL_STORAGE_PATH,
    temporary_settings,
)

from flows.check_health import check_health
from ods.errors import OdsError
from ods.settings import get_settings
from ods.stages.health import COMPONENTS
from tests.support.result_storage import pickled_or_not_json


def test_cached_task_results_and_a_failed_runs_exceptions_are_stored_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODS_CATALOG__URL", "postgresql+psycopg://nobody@127.0.0.1:1/ods")
    monkeypatch.setenv("ODS_CATALOG__CONNECT_TIMEOUT_S", "1")
    get_settings.cache_clear()
    storage = tmp_path / "results"

    with (
        temporary_settings(
            updates={
                PREFECT_RESULTS_DEFAULT_SERIALIZER: "pickle",
                PREFECT_RESULTS_LOCAL_STORAGE_PATH: storage,
            }
        ),
        pytest.raises(OdsError, match="unhealthy components: catalog"),
    ):
        check_health()

    assert pickled_or_not_json(storage) == {}
    payloads = []  # task results are records (serializer + result), a flow's exception stands alone
    for path in storage.rglob("*"):
        item = json.loads(path.read_bytes())
        if "metadata" in item:
            assert item["metadata"]["serializer"]["type"] == "json"
            item = json.loads(item["result"])
        payloads.append(item)
    # each component's check (cached by check-component: a CheckResult, as JSON naming its class) and the
    # failure of report-health and of the flow
    checks = [item["data"] for item in payloads if item.get("__class__") == "ods.stages.health.CheckResult"]
    assert {check["component"] for check in checks} == set(COMPONENTS)
    failures = [item for item in payloads if "__exc_type__" in item]
    assert [item["__exc_type__"] for item in failures] == ["ods.errors.OdsError"] * 2
    assert all(item["message"].startswith("unhealthy components: catalog") for item in failures)
