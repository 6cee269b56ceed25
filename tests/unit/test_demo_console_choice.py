"""`ods demo` ends by serving the web console only when a person runs it in a terminal outside CI, unless
``--serve/--no-serve`` says otherwise (the decision, with the terminal and the environment injected)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ods.cli import app
from ods.cli.ops import serves_console_after_demo


@pytest.mark.parametrize(
    ("choice", "tty", "environ", "serves"),
    [
        (None, True, {}, True),  # a person at a terminal: the console follows
        (None, True, {"CI": ""}, True),  # CI set but empty counts as unset
        (None, True, {"CI": "true"}, False),  # a CI job stops after the pipeline
        (None, True, {"CI": "1"}, False),
        (None, False, {}, False),  # piped or scripted: stops after the pipeline, as before
        (True, False, {"CI": "true"}, True),  # --serve asks for it anyway
        (False, True, {}, False),  # --no-serve refuses it in a terminal
    ],
)
def test_the_console_is_served_after_the_demo_only_in_a_terminal_outside_ci(
    choice: bool | None, tty: bool, environ: dict[str, str], serves: bool
) -> None:
    assert serves_console_after_demo(choice, stdin_is_tty=tty, environ=environ) is serves


def test_the_demo_documents_the_choice_in_its_help() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "--serve" in result.output and "--no-serve" in result.output
