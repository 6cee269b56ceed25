"""A failing flow command prints one `error:` line and exits 2: no Prefect traceback, no Prefect log
line, no "EventsWorker - Still processing items"; `--verbose` shows them. Every case of issue 19 item 10,
on a Prefect home of this module whose default result serializer is pickle: what each run stores is JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_ods
from tests.support.result_storage import pickled_or_not_json

MALFORMED_SPEC = "name: bad\nsource: {uri: [x.csv\n"
HTML_SPEC = "name: report\nsource: {uri: report.xlsx}\n"
HTML_AS_XLSX = "<html><body><table><tr><td>total</td><td>12</td></tr></table></body></html>"
PAYMENTS_SPEC = "name: payments\nsource: {uri: payments.csv}\nexpectations:\n  - not_null: {column: id}\n"

CASES = {
    "missing spec": (
        ["datasets", "prepare", "nosuch.yaml"],
        "error: cannot read nosuch.yaml: no such file; pass an existing file or s3://bucket/key",
    ),
    "malformed spec": (
        ["datasets", "prepare", "malformed.yaml"],
        "error: malformed.yaml line 3, column 1: invalid YAML: ",
    ),
    "empty spec": (
        ["datasets", "prepare", "empty.yaml"],
        "error: empty.yaml is empty; a dataset spec needs at least name and source",
    ),
    "HTML saved as .xlsx": (
        ["datasets", "prepare", "html.yaml"],
        "error: report.xlsx: not a readable .xlsx workbook (File is not a zip file); re-save it from Excel",
    ),
    "rejected dataset": (
        ["datasets", "prepare", "payments.yaml"],
        "error: dataset 'payments' v1 rejected: failed expectations: not_null(id)",
    ),
    "missing folder": (
        ["kb", "ingest", "nonexistent", "--kb", "k"],
        "error: cannot list nonexistent: not a directory; pass a folder or s3://bucket/prefix",
    ),
    "unknown model": (["models", "deploy", "nosuch"], "error: no model named 'nosuch'"),
}


def _inputs(folder: Path) -> Path:
    (folder / "malformed.yaml").write_text(MALFORMED_SPEC, encoding="utf-8")
    (folder / "empty.yaml").write_text("", encoding="utf-8")
    (folder / "html.yaml").write_text(HTML_SPEC, encoding="utf-8")
    (folder / "report.xlsx").write_text(HTML_AS_XLSX, encoding="utf-8")
    (folder / "payments.yaml").write_text(PAYMENTS_SPEC, encoding="utf-8")
    (folder / "payments.csv").write_text("id,amount\n1,10\n,20\n3,30\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pickle_by_default(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A Prefect home (its database migrated once, by the first command) whose default serializer is
    pickle, Prefect's own default."""
    home = tmp_path_factory.mktemp("prefect-home")
    return {"PREFECT_HOME": str(home), "PREFECT_RESULTS_DEFAULT_SERIALIZER": "pickle"}


def _new_files(storage: Path, before: set[Path]) -> set[Path]:
    return {path for path in storage.rglob("*") if path.is_file()} - before if storage.exists() else set()


@pytest.mark.parametrize("case", list(CASES))
def test_a_failing_flow_command_prints_one_error_line_and_stores_no_pickle(
    case: str, tmp_path: Path, pickle_by_default: dict[str, str]
) -> None:
    args, expected = CASES[case]
    storage = Path(pickle_by_default["PREFECT_HOME"]) / "storage"
    before = _new_files(storage, set())

    completed = run_ods(*args, cwd=_inputs(tmp_path), env=pickle_by_default)

    assert completed.returncode == 2, completed.stderr[-3000:]
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr[-3000:]
    assert lines[0].startswith(expected), lines[0]
    assert _new_files(storage, before)  # the failed run's exception was stored ...
    assert pickled_or_not_json(storage) == {}  # ... as JSON


def test_verbose_shows_prefect_logs_and_the_traceback_before_the_error_line(
    tmp_path: Path, pickle_by_default: dict[str, str]
) -> None:
    completed = run_ods("--verbose", "models", "deploy", "nosuch", cwd=tmp_path, env=pickle_by_default)

    assert completed.returncode == 2
    assert "Encountered exception during execution" in completed.stderr  # the flow run's log
    assert "Traceback (most recent call last)" in completed.stderr
    assert "\nerror: no model named 'nosuch'" in completed.stderr


def test_a_succeeding_flow_command_prints_no_prefect_log_and_stores_no_pickle(
    tmp_path: Path, pickle_by_default: dict[str, str]
) -> None:
    env = {**pickle_by_default, "PREFECT_LOGGING_LEVEL": "INFO"}

    completed = run_ods("models", "undeploy", "nosuch", cwd=tmp_path, env=env)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "no model named 'nosuch'" in completed.stdout  # nothing to stop is not an error
    assert completed.stderr == ""  # not even Prefect's INFO lines ("Beginning flow run ...")
    storage = Path(env["PREFECT_HOME"]) / "storage"
    assert not storage.exists() or pickled_or_not_json(storage) == {}
