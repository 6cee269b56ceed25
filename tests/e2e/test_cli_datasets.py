"""`ods datasets ...` as a user runs it: real processes, an ephemeral Prefect server, the local profile."""

from __future__ import annotations

from pathlib import Path

from ods.factories import open_catalog
from ods.settings import get_settings
from ods.stages.sample_data import write_sales_example
from tests.support.cli import run_ods


def test_prepare_list_show_head_a_dataset(tmp_path: Path) -> None:
    _, spec = write_sales_example(tmp_path / "example", rows=400)

    prepared = run_ods("datasets", "prepare", str(spec), cwd=tmp_path)
    listed = run_ods("datasets", "list", cwd=tmp_path)
    shown = run_ods("datasets", "show", "sales@1", cwd=tmp_path)
    head = run_ods("datasets", "head", "sales", "-n", "3", cwd=tmp_path)

    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert "registered sales@1: 392 rows" in prepared.stdout
    assert "cards/v1.md" in prepared.stdout
    assert listed.returncode == 0 and "sales" in listed.stdout
    assert shown.returncode == 0, shown.stderr
    for expected in ("registered", "source sha256", "customer_email", "email", "validation run", "in_set"):
        assert expected in shown.stdout
    assert head.returncode == 0, head.stderr
    assert "first 3 of 392 rows" in head.stdout


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    missing = run_ods("datasets", "show", "nope", cwd=tmp_path)
    bad_ref = run_ods("datasets", "head", "sales@latest", cwd=tmp_path)
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: Bad Name\nsource: {uri: x.csv}\n", encoding="utf-8")
    invalid = run_ods("datasets", "prepare", str(bad_spec), cwd=tmp_path)

    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error: ") and "nope" in missing.stderr
    assert bad_ref.returncode == 2
    assert "must be a positive number" in bad_ref.stderr
    assert invalid.returncode == 2
    assert invalid.stderr.strip().splitlines()[-1] == (
        "error: bad.yaml line 1, name: dataset name 'Bad Name' is not allowed: use 1-63 lower-case letters, "
        "digits, '_' or '-', starting with a letter (e.g. sales_2024)"
    )
    with open_catalog(get_settings()) as catalog:
        assert catalog.list_datasets() == [], "nothing is recorded for a spec with a bad name"
