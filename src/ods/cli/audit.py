"""`ods audit`: read the audit log `ods serve` writes (docs/security.md, "Audit")."""

from __future__ import annotations

import typer
from rich.markup import escape

from ods.cli.console import console, headed_table
from ods.domain.object_keys import printable_text

audit_app = typer.Typer(help="The audit log of `ods serve`: who did what, when, and how it ended.")


@audit_app.command("list")
def audit_list(
    since: str | None = typer.Option(
        None,
        "--since",
        help="Rows at or after this time: 2026-12-01, 2026-12-01T08:00:00Z, or an age: 90m, 12h, 7d.",
    ),
    subject: str | None = typer.Option(
        None, "--subject", help="Only this caller (a key's name, a token's subject)."
    ),
    action: str | None = typer.Option(
        None, "--action", help="Only this action, e.g. query.execute, chat.ask, auth.login, datasets.create."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="How many rows, newest first (1-500)."),
) -> None:
    """The newest audit rows, newest first: time, tenant, subject, action, resource, outcome, detail."""
    from ods.adapters.catalog.audit import AuditFilter
    from ods.factories import open_catalog
    from ods.settings import get_settings
    from ods.stages.audit import list_audit, parse_since

    where = AuditFilter(since=parse_since(since) if since else None, subject=subject, action=action)
    with open_catalog(get_settings()) as catalog:
        page = list_audit(catalog, where, limit=limit)
    table = headed_table(
        f"{len(page.entries)} audit row(s)" + (" (more: raise --limit)" if page.next_offset else ""),
        ("time", "tenant", "subject", "action", "resource", "outcome", "status", "request", "detail"),
    )
    for entry in page.entries:
        table.add_row(
            entry.at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            entry.tenant or "",
            escape(printable_text(entry.subject or "")),
            escape(entry.action),
            escape(entry.resource),
            entry.outcome,
            str(entry.status_code or ""),
            entry.request_id or "",
            escape(printable_text(entry.detail or "")),
        )
    console.print(table)
