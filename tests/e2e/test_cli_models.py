"""`ods models ...` as a user runs it: real processes, an ephemeral Prefect server, the local profile."""

from __future__ import annotations

from pathlib import Path

from ods.stages.sample_data import write_sales_example
from tests.support.cli import run_ods


def _register_sales(directory: Path) -> None:
    """Register the sales example with the library's prepare stages, in process (the prepare CLI has its own test)."""
    from ods.adapters.tabular.source import read_table
    from ods.domain.cleaning import apply_cleaning
    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.prepare import dataset_prefix, fetch_source, load_spec, register_version, write_parquet

    _, spec = write_sales_example(directory, rows=400)
    settings = get_settings()
    store = build_object_store(settings)
    store.ensure_ready()
    loaded = load_spec(str(spec), settings)
    source = fetch_source(loaded, settings)
    frame = apply_cleaning(
        read_table(source.data, name=source.name, source=loaded.spec.source), loaded.spec
    ).frame
    written = write_parquet(store, dataset_prefix("sales"), frame)
    with open_catalog(settings) as catalog:
        register_version(
            catalog, loaded, source, written, frame=frame, profile={}, validation_rows=[], flow_run_id=None
        )


def test_train_list_show_a_tabular_model_and_errors_are_one_line(tmp_path: Path) -> None:
    _register_sales(tmp_path / "example")

    trained = run_ods(
        "models",
        "train",
        "sales",
        "--target",
        "returned",
        "--name",
        "returns",
        "-p",
        "max_iter=40",
        cwd=tmp_path,
    )
    listed = run_ods("models", "list", cwd=tmp_path)
    shown = run_ods("models", "show", "returns@1", cwd=tmp_path)
    bad_param = run_ods("models", "train", "sales", "--target", "returned", "-p", "max_iters=5", cwd=tmp_path)
    bad_name = run_ods("models", "train", "sales", "--target", "returned", "--name", "../x", cwd=tmp_path)

    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "registered returns@1 (tabular on sales@1): accuracy=" in trained.stdout
    assert "artifacts: file://" in trained.stdout and "/models/returns/" in trained.stdout
    assert listed.returncode == 0, listed.stderr
    assert "returns" in listed.stdout and "sales@1" in listed.stdout and "accuracy=" in listed.stdout
    assert shown.returncode == 0, shown.stderr
    for expected in (
        "returns@1 registered: tabular, sklearn-skops",
        "dataset version",
        "sales@1 (registered)",
        "sales.csv",
        "code version",
        "baseline_accuracy",
        "max_iter",
        "returned",
        "order_id (392 distinct values",
    ):
        assert expected in shown.stdout, expected
    assert bad_param.returncode == 2
    assert (
        bad_param.stderr.strip()
        .splitlines()[-1]
        .startswith("error: tabular parameters: unknown parameter 'max_iters'")
    )
    assert bad_name.returncode == 2
    assert bad_name.stderr.splitlines() == [
        "error: model name '../x' is not allowed: use 1-63 lower-case letters, digits, '_' or '-', starting "
        "with a letter (e.g. sales-returns)"
    ]
