"""Endpoints remember their server: the served model id, process id, log file and launch details.

Revision ID: 0002
Revises: 0001
Create Date: written by hand

The deploy-model flow needs them to reuse a live endpoint, stop a replaced one and tell callers which
model id to send (``transformers serve`` names a model by the folder it was given). All nullable, so
endpoints recorded before this revision stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.add_column(sa.Column("served_model", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("log_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("details", JSON_DOCUMENT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.drop_column("details")
        batch_op.drop_column("log_path")
        batch_op.drop_column("pid")
        batch_op.drop_column("served_model")
