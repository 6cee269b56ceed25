"""The initial catalog: datasets, models, endpoints, knowledge bases, documents, chunks, conversations.

Revision ID: 0001
Revises:
Create Date: written by hand

Written by hand to match ``ods.adapters.catalog.schema`` exactly (the drift test compares them).
Types are spelled out here rather than imported, so later schema changes cannot rewrite history. The
constraint and index names follow the catalog's naming convention (``pk_<table>``, ``fk_<table>_<column>_
<target>``, ``uq_<table>_<columns>``, ``ix_<table>_<column>``), so the helpers below derive them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_VERSION_STATUS = "status IN ('registered', 'rejected')"
_DOCUMENT_STATUS = "status IN ('indexed', 'quarantined', 'deleted')"


def _required(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=False)


def _optional(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=True)


def _integer_id() -> sa.Column[Any]:
    return _required("id", sa.Integer())


def _timestamp(name: str) -> sa.Column[Any]:
    return _required(name, sa.DateTime(timezone=True))


def _primary_key(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*(columns or ("id",)), name=op.f(f"pk_{table}"))


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _check(table: str, suffix: str, condition: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(condition, name=op.f(f"ck_{table}_{suffix}"))


def _foreign_key(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    """``table.column`` → ``target.id``, named by the convention."""
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def _create_index(table: str, column: str) -> None:
    op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def _create_named_table(table: str) -> None:
    """``datasets`` and ``models``: a unique name, a description and when it was created."""
    op.create_table(
        table,
        _integer_id(),
        _required("name", sa.String(length=200)),
        _optional("description", sa.Text()),
        _timestamp("created_at"),
        _primary_key(table),
        _unique(table, "name"),
    )


def _version_checks(table: str) -> tuple[sa.CheckConstraint, sa.CheckConstraint]:
    """What ``dataset_versions`` and ``model_versions`` both check: their status and version numbering."""
    return _check(table, "status", _VERSION_STATUS), _check(table, "version_positive", "version >= 1")


def upgrade() -> None:
    _create_named_table("datasets")
    op.create_table(
        "dataset_versions",
        _integer_id(),
        _required("dataset_id", sa.Integer()),
        _required("version", sa.Integer()),
        _required("content_hash", sa.String(length=64)),
        _required("uri", sa.Text()),
        _required("schema", JSON_DOCUMENT),
        _required("profile", JSON_DOCUMENT),
        _required("row_count", sa.BigInteger()),
        _required("size_bytes", sa.BigInteger()),
        _required("status", sa.String(length=16)),
        _optional("reason", sa.Text()),
        _optional("source_uri", sa.Text()),
        _optional("source_etag", sa.String(length=200)),
        _optional("source_sha256", sa.String(length=64)),
        _optional("spec_hash", sa.String(length=64)),
        _optional("flow_run_id", sa.String(length=64)),
        _timestamp("created_at"),
        *_version_checks("dataset_versions"),
        _foreign_key("dataset_versions", "dataset_id", "datasets", "CASCADE"),
        _primary_key("dataset_versions"),
        _unique("dataset_versions", "dataset_id", "content_hash"),
        _unique("dataset_versions", "dataset_id", "version"),
    )
    op.create_table(
        "dataset_version_parents",
        _required("child_version_id", sa.Integer()),
        _required("parent_version_id", sa.Integer()),
        _foreign_key("dataset_version_parents", "child_version_id", "dataset_versions", "CASCADE"),
        _foreign_key("dataset_version_parents", "parent_version_id", "dataset_versions", "RESTRICT"),
        _primary_key("dataset_version_parents", "child_version_id", "parent_version_id"),
    )
    _create_index("dataset_version_parents", "parent_version_id")
    op.create_table(
        "validation_runs",
        _integer_id(),
        _required("dataset_version_id", sa.Integer()),
        _required("success", sa.Boolean()),
        _required("results", JSON_DOCUMENT),
        _optional("quarantine_uri", sa.Text()),
        _timestamp("created_at"),
        _foreign_key("validation_runs", "dataset_version_id", "dataset_versions", "CASCADE"),
        _primary_key("validation_runs"),
    )
    _create_index("validation_runs", "dataset_version_id")
    _create_named_table("models")
    op.create_table(
        "model_versions",
        _integer_id(),
        _required("model_id", sa.Integer()),
        _required("version", sa.Integer()),
        _required("trainer", sa.String(length=100)),
        _required("params", JSON_DOCUMENT),
        _required("metrics", JSON_DOCUMENT),
        _required("artifact_uri", sa.Text()),
        _optional("dataset_version_id", sa.Integer()),
        _optional("code_version", sa.String(length=100)),
        _optional("flow_run_id", sa.String(length=64)),
        _required("status", sa.String(length=16)),
        _timestamp("created_at"),
        *_version_checks("model_versions"),
        _foreign_key("model_versions", "dataset_version_id", "dataset_versions", "RESTRICT"),
        _foreign_key("model_versions", "model_id", "models", "CASCADE"),
        _primary_key("model_versions"),
        _unique("model_versions", "model_id", "version"),
    )
    _create_index("model_versions", "dataset_version_id")
    op.create_table(
        "endpoints",
        _integer_id(),
        _required("model_version_id", sa.Integer()),
        _required("backend", sa.String(length=16)),
        _required("url", sa.Text()),
        _required("status", sa.String(length=16)),
        _optional("log_tail", sa.Text()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _check("endpoints", "backend", "backend IN ('vllm', 'transformers', 'openai')"),
        _check("endpoints", "status", "status IN ('starting', 'active', 'failed', 'stopped')"),
        _foreign_key("endpoints", "model_version_id", "model_versions", "RESTRICT"),
        _primary_key("endpoints"),
    )
    _create_index("endpoints", "model_version_id")
    op.create_table(
        "knowledge_bases",
        _integer_id(),
        _required("name", sa.String(length=200)),
        _optional("source_uri", sa.Text()),
        _required("embedding_model", sa.String(length=200)),
        _required("embedding_dim", sa.Integer()),
        _required("collection_name", sa.String(length=255)),
        _timestamp("created_at"),
        _primary_key("knowledge_bases"),
        _unique("knowledge_bases", "collection_name"),
        _unique("knowledge_bases", "name"),
    )
    op.create_table(
        "documents",
        _integer_id(),
        _required("kb_id", sa.Integer()),
        _required("uri", sa.Text()),
        _required("status", sa.String(length=16)),
        _optional("current_version_id", sa.Integer()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _check("documents", "status", _DOCUMENT_STATUS),
        _foreign_key("documents", "kb_id", "knowledge_bases", "CASCADE"),
        _primary_key("documents"),
        _unique("documents", "kb_id", "uri"),
    )
    op.create_table(
        "document_versions",
        _integer_id(),
        _required("document_id", sa.Integer()),
        _required("sha256", sa.String(length=64)),
        _optional("etag", sa.String(length=200)),
        _required("status", sa.String(length=16)),
        _optional("reason", sa.Text()),
        _required("chunk_count", sa.Integer()),
        _optional("parser", sa.String(length=100)),
        _optional("timings", JSON_DOCUMENT),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _check("document_versions", "status", _DOCUMENT_STATUS),
        _foreign_key("document_versions", "document_id", "documents", "CASCADE"),
        _primary_key("document_versions"),
        _unique("document_versions", "document_id", "sha256"),
    )
    # documents and document_versions point at each other: the second arrow is added once both exist.
    with op.batch_alter_table("documents") as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_documents_current_version_id_document_versions"),
            "document_versions",
            ["current_version_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(op.f("ix_documents_current_version_id"), ["current_version_id"], unique=False)
    op.create_table(
        "chunks",
        _required("id", sa.String(length=64)),
        _required("document_version_id", sa.Integer()),
        _required("chunk_index", sa.Integer()),
        _optional("page", sa.Integer()),
        _optional("heading", sa.Text()),
        _required("char_count", sa.Integer()),
        _foreign_key("chunks", "document_version_id", "document_versions", "CASCADE"),
        _primary_key("chunks"),
        _unique("chunks", "document_version_id", "chunk_index"),
    )
    op.create_table(
        "conversations",
        _required("id", sa.String(length=32)),
        _required("title", sa.Text()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _primary_key("conversations"),
    )
    op.create_table(
        "messages",
        _integer_id(),
        _required("conversation_id", sa.String(length=32)),
        _required("role", sa.String(length=16)),
        _required("content", sa.Text()),
        _optional("sql", sa.Text()),
        _optional("model", sa.String(length=200)),
        _optional("usage", JSON_DOCUMENT),
        _timestamp("created_at"),
        _check("messages", "role", "role IN ('user', 'assistant', 'system')"),
        _foreign_key("messages", "conversation_id", "conversations", "CASCADE"),
        _primary_key("messages"),
    )
    _create_index("messages", "conversation_id")
    op.create_table(
        "citations",
        _integer_id(),
        _required("message_id", sa.Integer()),
        _required("marker", sa.Integer()),
        _optional("chunk_id", sa.String(length=64)),
        _optional("document_version_id", sa.Integer()),
        _optional("dataset_version_id", sa.Integer()),
        _foreign_key("citations", "chunk_id", "chunks", "SET NULL"),
        _foreign_key("citations", "dataset_version_id", "dataset_versions", "SET NULL"),
        _foreign_key("citations", "document_version_id", "document_versions", "SET NULL"),
        _foreign_key("citations", "message_id", "messages", "CASCADE"),
        _primary_key("citations"),
    )
    for column in ("chunk_id", "dataset_version_id", "document_version_id", "message_id"):
        _create_index("citations", column)


def downgrade() -> None:
    op.drop_table("citations")
    op.drop_table("messages")
    op.drop_table("conversations")
    op.drop_table("chunks")
    with op.batch_alter_table("documents") as batch_op:
        batch_op.drop_index(op.f("ix_documents_current_version_id"))
        batch_op.drop_constraint(
            op.f("fk_documents_current_version_id_document_versions"), type_="foreignkey"
        )
    for table in (
        "document_versions",
        "documents",
        "knowledge_bases",
        "endpoints",
        "model_versions",
        "models",
        "validation_runs",
        "dataset_version_parents",
        "dataset_versions",
        "datasets",
    ):
        op.drop_table(table)
