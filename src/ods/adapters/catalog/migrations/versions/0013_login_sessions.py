"""The console's login sessions: the server side of OIDC authorization code + PKCE.

Revision ID: 0013
Revises: 0012
Create Date: written by hand

One row per browser login in progress (``pending``: the state, nonce and PKCE verifier between
``/auth/login`` and ``/auth/callback``) or signed in (``active``: the tokens). ``id`` is the SHA-256 of
the random value in the browser's cookie, never the value itself, and ``sealed`` is that row's data
encrypted with a key derived from the cookie's value: the table alone opens no session and shows no
token. ``expires_at`` is indexed for the pruning of ended sessions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('pending', 'active')", name=op.f("ck_login_sessions_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
    )
    op.create_index(op.f("ix_login_sessions_expires_at"), "login_sessions", ["expires_at"], unique=False)
    op.create_index(op.f("ix_login_sessions_subject"), "login_sessions", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_login_sessions_subject"), table_name="login_sessions")
    op.drop_index(op.f("ix_login_sessions_expires_at"), table_name="login_sessions")
    op.drop_table("login_sessions")
