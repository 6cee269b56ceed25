"""The terminal the `ods` command writes to, and how it shows names given by people."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ods.domain.names import display_name

console = Console()
error_console = Console(stderr=True)


def shown(name: str) -> str:
    """A stored or given name as Rich markup: escaped (``display_name``) and with no markup of its own."""
    return escape(display_name(name))
