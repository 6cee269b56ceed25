"""Datasets carry tags and can be archived: what `PUT` and `DELETE /api/v1/datasets/{name}` change.

Revision ID: 0007
Revises: 0006
Create Date: written by hand

Datasets have had a nullable ``description`` since 0001. ``tags`` is a JSON list, empty for every dataset
made before; ``archived_at`` is NULL for a live dataset and set when it is archived (its versions and their
bytes stay; archiving only hides it from lists until it is restored).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tags_type = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.add_column(sa.Column("tags", tags_type, nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.drop_column("archived_at")
        batch_op.drop_column("tags")
