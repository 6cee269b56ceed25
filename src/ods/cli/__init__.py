"""The `ods` command: the Typer app, one module per command group (datasets, kb, models, answers, events,
ops), and the console-script entry point.

Batch commands run the same Prefect flows a deployment runs; interactive ones call the library
directly. Every failure the user can act on is an :class:`~ods.errors.OdsError`, printed as one line.
"""

from __future__ import annotations

import sys
import traceback

import typer

from ods.cli.answers import ask, chat, conversations_app
from ods.cli.audit import audit_app
from ods.cli.console import error_console
from ods.cli.datasets import datasets_app
from ods.cli.events import events_app
from ods.cli.kb import kb_app
from ods.cli.keys import keys_app
from ods.cli.models import models_app
from ods.cli.ops import config_app, demo, doctor, init, prefect_app
from ods.cli.serve import serve
from ods.errors import OdsError
from ods.orchestration.temporary_server import OUTPUT

app = typer.Typer(
    name="ods",
    help="ONE-DATA-STUDIO: raw files to trained, served models and grounded answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_app, name="config")
app.add_typer(datasets_app, name="datasets")
app.add_typer(kb_app, name="kb")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.command("ask")(ask)
app.command("chat")(chat)
app.add_typer(conversations_app, name="conversations")
app.add_typer(events_app, name="events")
app.add_typer(models_app, name="models")
app.add_typer(prefect_app, name="prefect")
app.command()(init)
app.command()(doctor)
app.command()(demo)
app.command()(serve)


@app.callback()
def options(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Prefect's logs and the traceback of an error."
    ),
) -> None:
    """ONE-DATA-STUDIO: raw files to trained, served models and grounded answers."""
    OUTPUT.verbose = verbose
    OUTPUT.quiet_prefect = not verbose


def main() -> None:
    """Console-script entry point: one-line errors (the traceback too with --verbose), non-zero exit codes."""
    try:
        app()
    except OdsError as error:
        if OUTPUT.verbose:
            traceback.print_exception(error)
        error_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
