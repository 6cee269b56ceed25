"""API keys become service accounts: each bound to a tenant and a set of roles.

Revision ID: 0010
Revises: 0009
Create Date: written by hand

Keys made before this revision could do everything `ods serve` offers; they keep that: tenant
``default`` and the role ``super_admin``. New keys name their tenant and roles (`ods keys create NAME
--tenant T --role R`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_list = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("tenant", sa.String(length=63), nullable=False, server_default=sa.text("'default'"))
        )
        batch.add_column(
            sa.Column("roles", json_list, nullable=False, server_default=sa.text("'[\"super_admin\"]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("roles")
        batch.drop_column("tenant")
