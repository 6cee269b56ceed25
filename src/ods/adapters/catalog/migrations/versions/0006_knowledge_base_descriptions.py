"""Knowledge bases carry a description: what a person (or `POST /api/v1/knowledge-bases`) says they hold.

Revision ID: 0006
Revises: 0005
Create Date: written by hand

Nullable, no default: knowledge bases made before (and by `ods kb ingest`, which asks for none) have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_bases") as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("knowledge_bases") as batch_op:
        batch_op.drop_column("description")
