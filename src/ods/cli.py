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


@app.command()
def demo() -> None:
    """Run the whole platform path on the embedded defaults."""
    init()
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
