"""The `ods` command: the Typer app, one module per command group (datasets, kb, models, answers, events,
ops), and the console-script entry point.

Batch commands run the same Prefect flows a deployment runs; interactive ones call the library
directly. Every failure the user can act on is an :class:`~ods.errors.OdsError`, printed as one line.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
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
    """Console-script entry point: one-line errors (the traceback too with --verbose), non-zero exit codes;
    the process ends without tearing its modules down (:func:`_end_without_teardown`)."""
    atexit.register(_end_without_teardown)  # the first of ods's exit handlers, so it runs after them all
    try:
        _run()
    except SystemExit as exit:
        _EXIT.status = _exit_status(exit.code)
        raise
    _EXIT.status = 0


def _run() -> None:
    try:
        app()
    except OdsError as error:
        if OUTPUT.verbose:
            traceback.print_exception(error)
        error_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


class _ExitStatus:
    status: int | None = None
    """The command's exit status once it ended normally or by sys.exit; None on any other exception."""


_EXIT = _ExitStatus()


def _exit_status(code: object) -> int:
    """The status Python itself exits with for ``sys.exit(code)`` (a message prints and gives 1)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _end_without_teardown() -> None:
    """The last exit handler: end the process now, with the command's status.

    By now Python has joined the command's threads and run every other exit handler (Prefect's stop of the
    temporary server and its log and event drains, the worker processes' and Milvus Lite's shutdowns, the
    weakref finalizers), and this one flushes the logs and the console. What remains is tearing down the
    modules, which after a flow command (torch, transformers, Prefect's server) takes ~1.3 s of CPU and
    writes nothing. An interrupted command (Ctrl-C) or an unexpected exception exits as Python does.
    """
    if _EXIT.status is None:
        return
    logging.shutdown()  # its own exit handler was registered before this one, so it would not run
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more to write
            stream.flush()
    os._exit(_EXIT.status)
