"""Operating ods: `ods init`, `ods doctor`, `ods config show`, `ods demo` and `ods prefect setup`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import timedelta

import typer
from rich.markup import escape
from rich.table import Table

from ods.cli.answers import ask
from ods.cli.console import console, error_console
from ods.cli.datasets import datasets_head, datasets_prepare
from ods.cli.kb import kb_ingest, kb_search
from ods.cli.models import models_train
from ods.cli.serve import serve
from ods.domain.sync_plan import DOCUMENTS_PER_BATCH
from ods.errors import OdsError

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
prefect_app = typer.Typer(help="What ods installs on a lasting Prefect server.", no_args_is_help=True)


def init() -> None:
    """Create ODS_HOME, migrate the catalog, and prepare the object store and vector index."""
    from ods.stages.setup import initialise

    for line in initialise():
        console.print(f"[green]✓[/green] {line}")


def doctor(
    deep: bool = typer.Option(
        False,
        "--deep",
        help="Also load the models and compare every knowledge base's catalog with its index (slower).",
    ),
) -> None:
    """Check every configured component; exit 1 if any is not OK."""
    from ods.settings import get_settings
    from ods.stages.health import run_checks

    results = run_checks(get_settings(), deep=deep)
    table = Table(title=f"ods doctor (profile {get_settings().profile})")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("s", justify="right")
    colours = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for result in results:
        status = f"[{colours[result.status]}]{result.status}[/{colours[result.status]}]"
        table.add_row(result.component, status, escape(result.detail), f"{result.seconds:.2f}")
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


def demo(
    serve_console: bool | None = typer.Option(
        None,
        "--serve/--no-serve",
        help="Then serve the web console on the demo data until Ctrl-C (default: when standard input is a "
        "terminal and CI is unset).",
    ),
) -> None:
    """Run the whole platform path on the embedded defaults; in a terminal, then serve the web console."""
    from ods.settings import get_settings
    from ods.stages.sample_data import write_policy_documents, write_sales_example

    init()
    examples = get_settings().home / "examples"
    _, spec = write_sales_example(examples)
    datasets_prepare(str(spec), None)
    datasets_head("sales", rows=5)
    models_train("sales", target="returned")
    kb_ingest(
        str(write_policy_documents(examples / "documents")), kb="policies", batch_size=DOCUMENTS_PER_BATCH
    )
    kb_search("How long do customers have to return a product?", kb="policies", k=3, mode="hybrid")
    for question, kb, datasets in (
        ("How long do customers have to return a product?", "policies", None),
        ("How many orders were placed in each region?", None, ["sales"]),
    ):
        console.rule(f"ods ask {question!r}")
        ask(question, kb=kb, dataset=datasets, conversation=None, mode="auto", as_json=False)
    doctor(deep=True)
    if not serves_console_after_demo(serve_console, stdin_is_tty=sys.stdin.isatty(), environ=os.environ):
        return
    settings = get_settings().api
    console.rule("the web console")
    console.print(
        f"Open the console at [bold]http://{settings.host}:{settings.port}/[/bold] (Ctrl-C stops the server)."
    )
    serve(host=None, port=None, preload=True)


def serves_console_after_demo(choice: bool | None, *, stdin_is_tty: bool, environ: Mapping[str, str]) -> bool:
    """Whether `ods demo` ends by serving the console: as ``--serve/--no-serve`` says, else when a person
    runs it in a terminal (standard input is a TTY) outside CI (``CI`` unset or empty), so a script, a pipe
    or a CI job stops after the pipeline as before."""
    if choice is not None:
        return choice
    return stdin_is_tty and not environ.get("CI")


def _flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


@prefect_app.callback()
def prefect_commands() -> None:
    """Set up a lasting Prefect server (PREFECT_API_URL) for ods: automations it needs."""


@prefect_app.command("setup")
def prefect_setup(
    missing_after: float | None = typer.Option(
        None,
        "--missing-after",
        help="Seconds without a heartbeat after which a flow run is marked Crashed "
        "(default: 3x PREFECT_FLOWS_HEARTBEAT_FREQUENCY; at least 2x).",
    ),
) -> None:
    """Install (or update) the automation that marks Crashed the flow runs whose heartbeats stopped.

    Idempotent: run it after `prefect deploy` or whenever the heartbeat frequency changes.
    """
    from prefect import get_client
    from prefect.settings import get_current_settings

    from ods.orchestration.runs import ZOMBIE_AUTOMATION_NAME, install_zombie_detection

    settings = get_current_settings()
    api_url = settings.api.url
    if not api_url:
        raise OdsError(
            "PREFECT_API_URL is not set: `ods prefect setup` configures a lasting Prefect server; set it, "
            "e.g. PREFECT_API_URL=http://127.0.0.1:4200/api (runs on the temporary server need no set-up)"
        )
    if settings.flows.heartbeat_frequency is None:
        raise OdsError(
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY is unset: flow runs send no heartbeats, so none can go "
            "missing; set it (Prefect's default is 180 s) on the workers and here"
        )
    heartbeat = max(settings.flows.heartbeat_frequency, 30)  # Prefect's floor for heartbeats
    window = missing_after if missing_after is not None else 3.0 * heartbeat
    if window < 2 * heartbeat:
        raise OdsError(
            f"--missing-after {window:g} is under twice the heartbeat frequency ({heartbeat} s, "
            f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY): healthy runs would be crashed between heartbeats; "
            f"use at least {2 * heartbeat}"
        )
    try:
        with get_client(sync_client=True) as client:
            outcome = install_zombie_detection(client, timedelta(seconds=window))
    except Exception as error:
        raise OdsError(
            f"cannot install the automation on the Prefect API {api_url}: {error}; check PREFECT_API_URL"
        ) from error
    typer.echo(
        f"{outcome} automation {ZOMBIE_AUTOMATION_NAME!r}: a flow run with no heartbeat "
        f"for {window:g} s is marked Crashed"
    )
