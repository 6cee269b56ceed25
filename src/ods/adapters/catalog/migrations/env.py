"""Alembic environment: migrates the connection that ``ods.adapters.catalog.database`` hands in.

The catalog never runs Alembic from an ini file or a URL: ``migrate(engine)`` opens the connection (and
takes the migration lock), then passes it as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ods.adapters.catalog.schema import Base
from ods.errors import CatalogError


def run_migrations(connection: Connection) -> None:
    """Run pending migrations on ``connection``, inside the caller's transaction when it has one."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise CatalogError(
        "catalog migrations run on a live connection only; "
        "use `ods init` or ods.adapters.catalog.migrate(engine)"
    )
run_migrations(_connection)
