"""Document versions can be ``superseded``: a newer version was indexed and this one's chunks deleted.

Revision ID: 0004
Revises: 0003
Create Date: written by hand

Before this revision an ingest deleted a changed document's old chunks from the index but left the old
version ``indexed`` in the catalog, so the catalog counted more versions and chunk rows than the index held
(issue 19: 121 versions and 1,277 chunk rows against 120 documents and 1,266 chunks in Milvus). Existing
rows are brought in line: a non-current ``indexed`` version of a document whose current version is
``indexed`` or ``deleted`` had its chunks deleted by the ingest that replaced (or removed) it, so it becomes
``superseded``. One whose document's current version is ``quarantined`` keeps ``indexed``: its chunks are
still in the index, and the next ingest deletes them and marks it (``retire_superseded_versions``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK = "ck_document_versions_status"
_OLD = "status IN ('indexed', 'quarantined', 'deleted')"
_NEW = "status IN ('indexed', 'quarantined', 'deleted', 'superseded')"


def upgrade() -> None:
    with op.batch_alter_table("document_versions") as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), _NEW)
    op.execute(
        sa.text(
            "UPDATE document_versions SET status = 'superseded' "
            "WHERE status = 'indexed' AND EXISTS ("
            " SELECT 1 FROM documents d JOIN document_versions current ON current.id = d.current_version_id"
            " WHERE d.id = document_versions.document_id AND current.id <> document_versions.id"
            " AND current.status IN ('indexed', 'deleted'))"
        )
    )


def downgrade() -> None:
    op.execute(sa.text("UPDATE document_versions SET status = 'indexed' WHERE status = 'superseded'"))
    with op.batch_alter_table("document_versions") as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(_CHECK), _OLD)
