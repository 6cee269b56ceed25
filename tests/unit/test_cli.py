"""The `ods` command as a user runs it: a real process, its exit code and what it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_ods
from tests.support.tiny_llm import tiny_model_dir


def test_init_prepares_home_and_is_idempotent(ods_home: Path) -> None:
    first = run_ods("init")
    second = run_ods("init")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert (ods_home / "catalog.db").is_file()
    assert (ods_home / "objects").is_dir()
    assert (ods_home / "milvus.db").exists()
    assert "revision" in second.stdout


def test_doctor_is_all_ok_on_the_local_profile() -> None:
    completed = run_ods("doctor")

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("OK") >= 6
    assert "FAIL" not in completed.stdout


def test_doctor_exits_non_zero_naming_an_unreachable_catalog() -> None:
    completed = run_ods(
        "doctor",
        env={
            "ODS_CATALOG__URL": "postgresql+psycopg://nobody:pw@127.0.0.1:1/ods",
            "ODS_CATALOG__CONNECT_TIMEOUT_S": "2",
        },
    )

    assert completed.returncode == 1
    assert "FAIL" in completed.stdout
    assert "127.0.0.1:1" in completed.stdout
    assert "pw@" not in completed.stdout
    assert "error: 1 component(s) failed: catalog" in completed.stderr


def test_doctor_names_the_missing_endpoint_of_an_openai_model() -> None:
    completed = run_ods("doctor", env={"ODS_LLM__KIND": "openai", "ODS_LLM__MODEL": "support-bot"})

    assert completed.returncode == 1
    assert "support-bot" in completed.stdout and "no active endpoint" in completed.stdout
    assert "error: 1 component(s) failed: llm" in completed.stderr


def test_doctor_checks_the_local_model_the_setting_names_not_the_packaged_one(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = tmp_path / "no-model-here"
    empty.mkdir()

    refused = run_ods("doctor", env={"ODS_LLM__MODEL": str(empty), "COLUMNS": "400"})
    found = run_ods("doctor", "--deep", env={"ODS_LLM__MODEL": str(tiny_model_dir(tmp_path_factory))})

    assert refused.returncode == 1
    assert f"local LLM model '{empty}' is neither" in refused.stdout
    assert "error: 1 component(s) failed: llm" in refused.stderr
    assert found.returncode == 0, found.stdout + found.stderr
    assert "loaded in" in found.stdout and "packaged at" not in found.stdout.split("llm", 1)[1]


def test_config_show_masks_secrets() -> None:
    completed = run_ods(
        "config",
        "show",
        "--json",
        env={"ODS_CATALOG__URL": "postgresql+psycopg://ods:hunter2@db/ods", "ODS_LLM__API_KEY": "sk-secret"},
    )

    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    assert data["effective"]["catalog_url"] == "postgresql+psycopg://ods:***@db/ods"
    assert "hunter2" not in completed.stdout
    assert "sk-secret" not in completed.stdout


def test_invalid_setting_is_one_line_error_and_exit_2() -> None:
    completed = run_ods("config", "show", env={"ODS_OBJECT_STORE__KIND": "s3"})

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: invalid settings: ODS_OBJECT_STORE__KIND: Input should be 'local' or 'minio' (got 's3')"
    ]


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (2, 2), ("a message", 1)])
def test_a_command_ends_with_the_status_python_gives_its_exit_code(code: object, status: int) -> None:
    from ods.cli import _exit_status

    assert _exit_status(code) == status
