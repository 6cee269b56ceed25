"""The ``tenant`` column that revisions 0012 and 0015 add to tables: one definition, so both add (and
drop) exactly the same column and index.

Rows made before the column existed belong to tenant ``default``; the column is indexed because every
list of the API filters on it. Batch mode rebuilds the table on SQLite and keeps its rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op


def add_tenant_column(tables: Iterable[str]) -> None:
    """Add the indexed ``tenant`` column, ``'default'`` for existing rows, to each of ``tables``."""
    for table in tables:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("tenant", sa.String(length=63), nullable=False, server_default=sa.text("'default'"))
            )
            batch.create_index(f"ix_{table}_tenant", ["tenant"])


def drop_tenant_column(tables: Iterable[str]) -> None:
    """Drop what :func:`add_tenant_column` added to each of ``tables``."""
    for table in tables:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_tenant")
            batch.drop_column("tenant")
