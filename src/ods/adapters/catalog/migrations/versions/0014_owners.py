"""Owners: who created each dataset, model and knowledge base.

Revision ID: 0014
Revises: 0013
Create Date: written by hand

``owner`` is the subject of the principal that created the row (a token's ``sub``, an API key's name);
the permission matrix's "as owner" cells (a ``data_engineer`` edits and archives its own datasets, an
``ml_engineer`` undeploys and deletes its own models) are checked against it. Rows made before this
revision, and rows the CLI or a flow makes, have no owner: only the admin roles may change those.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED_TABLES = ("datasets", "models", "knowledge_bases")


def upgrade() -> None:
    for table in OWNED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))


def downgrade() -> None:
    for table in OWNED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner")
