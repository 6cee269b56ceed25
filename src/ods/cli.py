"""The `ods` command.

Batch commands run the same Prefect flows a deployment runs; interactive ones call the library
directly. Every failure the user can act on is an :class:`~ods.errors.OdsError`, printed as one line.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from ods.errors import OdsError

app = typer.Typer(
    name="ods",
    help="ONE-DATA-STUDIO: raw files to trained, served models and grounded answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
datasets_app = typer.Typer(help="Prepare, list and inspect dataset versions.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

console = Console()
error_console = Console(stderr=True)


@app.command()
def init() -> None:
    """Create ODS_HOME, migrate the catalog, and prepare the object store and vector index."""
    from ods.bootstrap import initialise

    for line in initialise():
        console.print(f"[green]✓[/green] {line}")


@app.command()
def doctor(
    deep: bool = typer.Option(False, "--deep", help="Also load the models (slower)."),
) -> None:
    """Check every configured component; exit 1 if any is not OK."""
    from ods.diagnostics import run_checks
    from ods.settings import get_settings

    results = run_checks(get_settings(), deep=deep)
    table = Table(title=f"ods doctor (profile {get_settings().profile})")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("s", justify="right")
    for result in results:
        status = "[green]OK[/green]" if result.ok else "[red]FAIL[/red]"
        table.add_row(result.component, status, result.detail, f"{result.seconds:.2f}")
    console.print(table)
    failed = [result.component for result in results if not result.ok]
    if failed:
        error_console.print(f"error: {len(failed)} component(s) failed: {', '.join(failed)}")
        raise typer.Exit(1)


@config_app.command("show")
def config_show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective settings, secrets masked."""
    from ods.settings import get_settings

    data = get_settings().masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(title="ods settings (ODS_* environment, .env)")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for name, value in _flatten(data):
        table.add_row(name, "" if value is None else str(value))
    console.print(table)


@datasets_app.command("prepare")
def datasets_prepare(
    spec: str = typer.Argument(..., help="Dataset spec (YAML): a path or s3://bucket/key."),
    source: str | None = typer.Option(
        None, "--source", help="Raw table to use instead of the spec's source.uri."
    ),
) -> None:
    """Clean, validate and register a dataset version (runs the prepare-dataset flow)."""
    from flows.prepare_dataset import prepare_dataset

    result = prepare_dataset(spec, source)
    console.print(
        f"[green]registered[/green] {result['dataset']}@{result['version']}: {result['rows']} rows at {result['uri']}"
    )
    if result.get("card_uri"):
        console.print(f"dataset card: {result['card_uri']}")


@datasets_app.command("list")
def datasets_list() -> None:
    """Every dataset with its newest registered version."""
    from ods.preparation import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        datasets = catalog.list_datasets()
    table = Table(title="datasets")
    for column in ("name", "latest", "versions", "description"):
        table.add_column(column)
    for dataset in datasets:
        latest = "-" if dataset.latest_version is None else str(dataset.latest_version)
        table.add_row(dataset.name, latest, str(dataset.version_count), dataset.description or "")
    console.print(table)


@datasets_app.command("show")
def datasets_show(ref: str = typer.Argument(..., help="NAME or NAME@VERSION.")) -> None:
    """Schema, profile, lineage and validation of a dataset version."""
    from ods.adapters.object_store import build_object_store
    from ods.preparation import card_uri, open_catalog, parse_dataset_ref
    from ods.settings import get_settings

    name, number = parse_dataset_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_dataset_version(name, number)
        runs = catalog.validation_runs(version.id)
    console.print(
        f"[bold]{version.dataset_name}@{version.version}[/bold] {version.status}: {version.row_count} rows"
    )
    lineage = Table(title="lineage", show_header=False)
    for field, value in (
        ("stored at", version.uri),
        ("content sha256", version.content_hash),
        ("source", version.source_uri),
        ("source etag", version.source_etag),
        ("source sha256", version.source_sha256),
        ("spec hash", version.spec_hash),
        ("flow run", version.flow_run_id),
        ("created", version.created_at.isoformat()),
        ("card", card_uri(build_object_store(settings), version)),
        ("reason", version.reason),
    ):
        lineage.add_row(field, "" if value is None else str(value))
    console.print(lineage)
    schema = Table(title="schema and profile")
    for column in ("column", "arrow type", "type", "nulls", "distinct", "min", "max", "pii"):
        schema.add_column(column)
    profile = version.profile.get("columns", {})
    for column in version.schema.get("columns", []):
        stats = profile.get(column["name"], {})
        schema.add_row(
            column["name"],
            column["type"],
            str(stats.get("dtype", "")),
            f"{100 * float(stats.get('null_rate') or 0):.1f}%",
            str(stats.get("distinct_count", "")),
            str(stats.get("min", "")),
            str(stats.get("max", "")),
            str(stats.get("pii_kind") or ""),
        )
    console.print(schema)
    for run in runs:
        results = Table(title=f"validation run {run.id}: {'passed' if run.success else 'FAILED'}")
        for column in ("expectation", "column", "success", "details"):
            results.add_column(column)
        for row in run.results.get("expectations", []):
            results.add_row(
                row["expectation"], str(row.get("column") or ""), str(row["success"]), row["details"]
            )
        console.print(results)
        if run.quarantine_uri:
            console.print(f"quarantined rows: {run.quarantine_uri}")


@datasets_app.command("head")
def datasets_head(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    rows: int = typer.Option(10, "-n", "--rows", min=1, help="How many rows to show."),
) -> None:
    """The first rows of a dataset version."""
    from ods.adapters.object_store import build_object_store
    from ods.preparation import head_rows, open_catalog, parse_dataset_ref
    from ods.settings import get_settings

    name, number = parse_dataset_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_dataset_version(name, number)
    frame = head_rows(build_object_store(settings), version.uri, rows)
    table = Table(
        title=f"{version.dataset_name}@{version.version} (first {len(frame)} of {version.row_count} rows)"
    )
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for record in frame.itertuples(index=False):
        table.add_row(*("" if value is None else str(value) for value in record))
    console.print(table)


@app.command()
def demo() -> None:
    """Run the whole platform path on the embedded defaults."""
    from ods.sample_data import write_sales_example
    from ods.settings import get_settings

    init()
    _, spec = write_sales_example(get_settings().home / "examples")
    datasets_prepare(str(spec), None)
    datasets_head("sales", rows=5)
    doctor(deep=True)


def _flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def main() -> None:
    """Console-script entry point: one-line errors, non-zero exit codes."""
    try:
        app()
    except OdsError as error:
        error_console.print(f"error: {error}", markup=False, highlight=False)
        sys.exit(2)
