"""`ods datasets ...`: prepare a dataset version (the prepare-dataset flow), list, show and head them."""

from __future__ import annotations

import typer

from ods.cli.console import console, field_table, headed_table, shown
from ods.orchestration.temporary_server import start_flow_runner

datasets_app = typer.Typer(help="Prepare, list and inspect dataset versions.", no_args_is_help=True)


@datasets_app.command("prepare")
def datasets_prepare(
    spec: str = typer.Argument(..., help="Dataset spec (YAML): a path or s3://bucket/key."),
    source: str | None = typer.Option(
        None, "--source", help="Raw table to use instead of the spec's source.uri."
    ),
) -> None:
    """Clean, validate and register a dataset version (runs the prepare-dataset flow)."""
    runner = start_flow_runner()
    from flows.prepare_dataset import prepare_dataset

    result = runner.run(prepare_dataset, spec, source)
    console.print(
        f"[green]registered[/green] {result.dataset}@{result.version}: {result.rows} rows at {result.uri}"
    )
    if result.card_uri:
        console.print(f"dataset card: {result.card_uri}")


@datasets_app.command("list")
def datasets_list() -> None:
    """Every dataset with its newest registered version."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        datasets = catalog.list_datasets()
    table = headed_table("datasets", ("name", "latest", "versions", "description"))
    for dataset in datasets:
        latest = "-" if dataset.latest_version is None else str(dataset.latest_version)
        table.add_row(shown(dataset.name), latest, str(dataset.version_count), dataset.description or "")
    console.print(table)


@datasets_app.command("show")
def datasets_show(ref: str = typer.Argument(..., help="NAME or NAME@VERSION.")) -> None:
    """Schema, profile, lineage and validation of a dataset version."""
    from ods.domain.refs import parse_dataset_ref
    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.prepare import card_uri

    name, number = parse_dataset_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_dataset_version(name, number)
        runs = catalog.validation_runs(version.id)
        tenant = catalog.get_dataset(name).tenant
    console.print(
        f"[bold]{version.dataset_name}@{version.version}[/bold] {version.status}: {version.row_count} rows"
    )
    lineage = field_table(
        "lineage",
        (
            ("stored at", version.uri),
            ("content sha256", version.content_hash),
            ("source", version.source_uri),
            ("source etag", version.source_etag),
            ("source sha256", version.source_sha256),
            ("spec hash", version.spec_hash),
            ("flow run", version.flow_run_id),
            ("created", version.created_at.isoformat()),
            ("card", card_uri(build_object_store(settings), version, tenant)),
            ("reason", version.reason),
        ),
    )
    console.print(lineage)
    schema = headed_table(
        "schema and profile", ("column", "arrow type", "type", "nulls", "distinct", "min", "max", "pii")
    )
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
        results = headed_table(
            f"validation run {run.id}: {'passed' if run.success else 'FAILED'}",
            ("expectation", "column", "success", "details"),
        )
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
    from ods.domain.refs import parse_dataset_ref
    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.prepare import head_rows

    name, number = parse_dataset_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_dataset_version(name, number)
    frame = head_rows(build_object_store(settings), version.uri, rows)
    table = headed_table(
        f"{version.dataset_name}@{version.version} (first {len(frame)} of {version.row_count} rows)",
        map(str, frame.columns),
        overflow="fold",
    )
    for record in frame.itertuples(index=False):
        table.add_row(*("" if value is None else str(value) for value in record))
    console.print(table)
