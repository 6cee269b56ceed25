"""The objects the bucket watcher has seen: one row per (bucket, key) with its last recorded version.

Revision ID: 0003
Revises: 0002
Create Date: written by hand

The watch-bucket flow diffs each listing against these rows to emit ods.object.created/deleted events;
the unique (bucket, key) constraint lets concurrent watchers upsert instead of recording an object twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watched_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watched_objects")),
        sa.UniqueConstraint("bucket", "key", name=op.f("uq_watched_objects_bucket_key")),
    )


def downgrade() -> None:
    op.drop_table("watched_objects")
