"""`ods keys`: the API keys `ods serve` accepts (``Authorization: Bearer <key>``).

A key is printed once, by `create`; the catalog keeps only its SHA-256 and its first characters, which
`list` shows. `revoke` takes effect on the server's next request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ods.cli.console import console, headed_table, shown

ROLE_HELP = (
    "A role the key holds (repeat for several; at least one): super_admin, platform_admin, tenant_admin, "
    "data_admin, data_engineer, data_analyst, data_viewer, ml_admin, ml_engineer, ml_developer, ml_viewer, "
    "app_admin, app_developer, app_user (docs/security.md has the matrix)."
)
keys_app = typer.Typer(help="API keys of `ods serve`: create, list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="Name of the key (who or what uses it), e.g. ci-pipeline."),
    role: Annotated[list[str] | None, typer.Option("--role", help=ROLE_HELP)] = None,
    tenant: str = typer.Option("default", "--tenant", help="The tenant the key acts in."),
    expires: str | None = typer.Option(
        None, "--expires", help="Lifetime: minutes, hours or days, e.g. 90m, 12h, 30d (default: never)."
    ),
) -> None:
    """Make a service account's key and print it once: store it now, it cannot be shown again (only its
    prefix is kept)."""
    from ods.domain.identity import check_roles, check_tenant
    from ods.factories import open_catalog
    from ods.settings import get_settings
    from ods.stages.api_keys import create_api_key

    roles = check_roles(role or [])  # before the catalog is opened: a typo costs nothing
    check_tenant(tenant)
    with open_catalog(get_settings()) as catalog:
        created = create_api_key(catalog, name, roles=roles, tenant=tenant, expires=expires)
    record = created.record
    until = _when(record.expires_at) if record.expires_at else "never"
    typer.echo(created.key)
    typer.echo(
        f"API key {record.name} made for tenant {record.tenant} with roles {', '.join(record.roles)} "
        f"(expires: {until}). Store it now: it is not shown again. Send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@keys_app.command("list")
def keys_list() -> None:
    """Every key by name with its prefix, state and times; never the key itself."""
    from ods.factories import open_catalog
    from ods.settings import get_settings
    from ods.stages.api_keys import api_key_state

    with open_catalog(get_settings()) as catalog:
        records = catalog.list_api_keys()
    table = headed_table(
        f"{len(records)} API key(s)",
        ("name", "tenant", "roles", "prefix", "state", "created", "expires", "last used", "revoked"),
    )
    for record in records:
        table.add_row(
            shown(record.name),
            record.tenant,
            ", ".join(record.roles),
            record.prefix + "…",
            api_key_state(record),
            _when(record.created_at),
            _when(record.expires_at),
            _when(record.last_used_at),
            _when(record.revoked_at),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="Name of the key to revoke.")) -> None:
    """Revoke a key: the server refuses it from its next request on. The name stays taken."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        record = catalog.revoke_api_key(name)
    typer.echo(f"API key {record.name} revoked at {_when(record.revoked_at)}")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""
