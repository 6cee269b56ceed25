"""Runs of `ods serve` kept in the catalog, so a run id stays answerable after the server restarts.

Revision ID: 0009
Revises: 0008
Create Date: written by hand

One row per run (an ingest after an upload or a delete, a dataset's prepare, a deploy, an undeploy): its
state, timings, what asked for it, its result or one-line error, the server process that runs it in its
background (``owner``) or the Prefect flow run that does the work. ``state`` is indexed: a server starting
looks up the runs a dead server left queued or running, to mark them interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_list = sa.JSON().with_variant(JSONB(), "postgresql")
    json_document = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    op.create_table(
        "server_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("knowledge_base", sa.String(length=200), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("requested_by", json_list, nullable=False),
        sa.Column("owner", sa.String(length=300), nullable=False),
        sa.Column("prefect_flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", json_document, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('ingest', 'deploy', 'undeploy', 'prepare')", name=op.f("ck_server_runs_kind")
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'completed', 'failed', 'interrupted')",
            name=op.f("ck_server_runs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_runs")),
    )
    op.create_index(op.f("ix_server_runs_state"), "server_runs", ["state"], unique=False)
    op.create_index(op.f("ix_server_runs_queued_at"), "server_runs", ["queued_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_server_runs_queued_at"), table_name="server_runs")
    op.drop_index(op.f("ix_server_runs_state"), table_name="server_runs")
    op.drop_table("server_runs")
