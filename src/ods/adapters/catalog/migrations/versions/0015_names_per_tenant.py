"""Names per tenant: a dataset, model or knowledge base name is unique within its tenant, not across all.

Revision ID: 0015
Revises: 0014
Create Date: written by hand

Two tenants may each hold a dataset ``sales``: the unique key becomes (tenant, name). Their objects and
collections were already apart (``tenants/<tenant>/`` keys, per-tenant collection names). The server's
runs and the webhooks' outbox events gain the tenant they were made for, since a run or an event names
its resource by name alone; rows made before this revision are the default tenant's, as every row was
before tenants existed. Existing rows are kept as they are (batch mode rebuilds the table on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from ods.adapters.catalog.migrations.tenant_column import add_tenant_column, drop_tenant_column

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAMED_TABLES = ("datasets", "models", "knowledge_bases")
RECORDED_TABLES = ("server_runs", "event_outbox")


def upgrade() -> None:
    for table in NAMED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_name", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_tenant_name", ["tenant", "name"])
    add_tenant_column(RECORDED_TABLES)


def downgrade() -> None:
    drop_tenant_column(RECORDED_TABLES)
    for table in NAMED_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_tenant_name", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_name", ["name"])
