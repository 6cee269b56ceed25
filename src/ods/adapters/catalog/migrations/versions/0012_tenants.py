"""Tenants: every dataset, model, knowledge base, conversation and webhook belongs to one.

Revision ID: 0012
Revises: 0011
Create Date: written by hand

Documents and chunks belong to their knowledge base's tenant, endpoints to their model's, and API keys
have had one since 0010. Rows made before this revision go to tenant ``default`` (the tenant of the
local profile's caller and of keys made without ``--tenant``). The column is indexed: every list of the
API filters on it. Names stay unique across tenants for now (per-tenant namespaces are a later step).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("datasets", "models", "knowledge_bases", "conversations", "webhooks")


def upgrade() -> None:
    for table in TENANT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("tenant", sa.String(length=63), nullable=False, server_default=sa.text("'default'"))
            )
            batch.create_index(f"ix_{table}_tenant", ["tenant"])


def downgrade() -> None:
    for table in TENANT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_tenant")
            batch.drop_column("tenant")
