"""The terminal the `ods` command writes to, how it shows names given by people, and the two table
layouts the command groups share: headed columns, and one ``field  value`` row per field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, OverflowMethod
from rich.markup import escape
from rich.table import Table

from ods.domain.names import display_name

console = Console()
error_console = Console(stderr=True)


def shown(name: str) -> str:
    """A stored or given name as Rich markup: escaped (``display_name``) and with no markup of its own."""
    return escape(display_name(name))


def headed_table(
    title: str, columns: Iterable[str], *, overflow: OverflowMethod = "ellipsis", **options: Any
) -> Table:
    """A table titled ``title`` with one headed column per name in ``columns`` (long values cut or folded
    by ``overflow``); ``options`` go to :class:`rich.table.Table`."""
    table = Table(title=title, **options)
    for column in columns:
        table.add_column(column, overflow=overflow)
    return table


def field_table(title: str, fields: Iterable[tuple[str, object]]) -> Table:
    """A table with no header and one ``field  value`` row per pair; a value of ``None`` is left blank."""
    table = Table(title=title, show_header=False)
    for field, value in fields:
        table.add_row(field, "" if value is None else str(value))
    return table
