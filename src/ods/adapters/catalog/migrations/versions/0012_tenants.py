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

from ods.adapters.catalog.migrations.tenant_column import add_tenant_column, drop_tenant_column

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("datasets", "models", "knowledge_bases", "conversations", "webhooks")


def upgrade() -> None:
    add_tenant_column(TENANT_TABLES)


def downgrade() -> None:
    drop_tenant_column(TENANT_TABLES)
