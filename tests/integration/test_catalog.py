"""The catalog against SQLite and the real PostgreSQL server: migrations, drift guard, repository behaviour.

SQLite tests get a fresh file each; PostgreSQL tests share one migrated database per module, truncated
before every test, and the migration tests create a database of their own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Engine, column, event, func, inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from ods.adapters.catalog import (
    Catalog,
    ChunkRecord,
    CitationRecord,
    DatasetVersionRecord,
    IndexedDocument,
    ModelVersionRecord,
    create_catalog_engine,
    current_revision,
    head_revision,
    migrate,
)
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.schema import Base, DatasetStatus, ModelStatus
from ods.domain.names import InvalidNameError
from ods.errors import CatalogError, NotFoundError
from tests.support.postgres import temporary_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
TABLES = sorted(Base.metadata.tables)
HASH_A, HASH_B, HASH_C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(scope="module")
def migrated_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated once for this module."""
    engine = create_catalog_engine(postgres_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return postgres_url


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty, migrated catalog (a new SQLite file, or the truncated PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("migrated_postgres_url")
    engine = create_catalog_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with Catalog.open(catalog_url) as opened:
        yield opened


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables at all."""
    if request.param == "sqlite":
        engine = create_catalog_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'catalog.db'}")
        yield engine
        engine.dispose()
        return
    with temporary_database("ods_test_migrate_") as url:
        engine = create_catalog_engine(url)
        yield engine
        engine.dispose()


def count_rows(catalog: Catalog, table: str) -> int:
    with catalog.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Base.metadata.tables[table])).scalar_one()


def add_version(
    catalog: Catalog,
    name: str,
    content_hash: str,
    *,
    status: DatasetStatus = "registered",
    uri: str | None = None,
    reason: str | None = None,
    source_uri: str | None = None,
    source_etag: str | None = None,
    parents: Sequence[int] = (),
) -> DatasetVersionRecord:
    return catalog.add_dataset_version(
        name,
        content_hash=content_hash,
        uri=uri or f"s3://ods/datasets/{name}/{content_hash[:8]}.parquet",
        schema={"columns": [{"name": "id", "type": "int64"}]},
        profile={"rows": 3},
        row_count=3,
        size_bytes=1024,
        status=status,
        reason=reason,
        source_uri=source_uri,
        source_etag=source_etag,
        parents=parents,
    )


# -- migrations -----------------------------------------------------------------------------------------


def test_migrations_create_every_table_then_are_a_no_op(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None

    assert migrate(empty_engine) == head_revision()

    assert current_revision(empty_engine) == head_revision()
    assert set(inspect(empty_engine).get_table_names()) == {*TABLES, "alembic_version"}
    statements: list[str] = []
    event.listen(empty_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    started = time.perf_counter()
    assert migrate(empty_engine) == head_revision()
    assert time.perf_counter() - started < 1.0
    assert [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "PRAGMA"))] == []


def test_migrated_schema_matches_the_orm_exactly(empty_engine: Engine) -> None:
    migrate(empty_engine)

    with empty_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
        inspector = inspect(connection)
        for table in Base.metadata.sorted_tables:
            declared = sorted(
                empty_engine.dialect.identifier_preparer.format_constraint(c)
                for c in table.constraints
                if isinstance(c, CheckConstraint)
            )
            reflected = sorted(str(c["name"]) for c in inspector.get_check_constraints(table.name))
            assert reflected == declared, table.name


def test_downgrade_to_base_then_upgrade_again(empty_engine: Engine) -> None:
    migrate(empty_engine)
    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}

    assert migrate(empty_engine) == head_revision()
    assert set(inspect(empty_engine).get_table_names()) == {*TABLES, "alembic_version"}


def test_concurrent_migrations_do_not_collide(empty_engine: Engine) -> None:
    engines = [
        create_catalog_engine(empty_engine.url.render_as_string(hide_password=False)) for _ in range(4)
    ]
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            revisions = list(pool.map(migrate, engines))
    finally:
        for engine in engines:
            engine.dispose()
    assert revisions == [head_revision()] * len(engines)
    assert current_revision(empty_engine) == head_revision()


def test_0004_marks_replaced_versions_superseded_and_keeps_every_link(empty_engine: Engine) -> None:
    """A catalog written before 0004 (old versions left 'indexed') is brought in line with the index."""
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
    tables = Base.metadata.tables
    now = datetime.now(UTC)
    stamps = {"created_at": now, "updated_at": now}
    # (uri, [(version id, sha, status)], current version id): a changed document, a document whose new
    # version was quarantined (its old chunks are still in the index), a deleted one, and an unchanged one.
    documents = [
        ("s3://docs/changed.md", [(1, HASH_A, "indexed"), (2, HASH_B, "indexed")], 2),
        ("s3://docs/broken.md", [(3, HASH_A, "indexed"), (4, HASH_B, "quarantined")], 4),
        ("s3://docs/gone.md", [(5, HASH_A, "indexed"), (6, HASH_B, "deleted")], 6),
        ("s3://docs/same.md", [(7, HASH_A, "indexed")], 7),
    ]
    knowledge_base = {
        "id": 1,
        "name": "kb",
        "embedding_model": "m",
        "embedding_dim": 4,
        "collection_name": "c",
        "created_at": now,
    }
    with empty_engine.begin() as connection:
        # The table as 0003 left it: today's model would also write columns later migrations added.
        connection.execute(table("knowledge_bases", *map(column, knowledge_base)).insert(), knowledge_base)
        for number, (uri, versions, current) in enumerate(documents, start=1):
            connection.execute(
                tables["documents"].insert(),
                {"id": number, "kb_id": 1, "uri": uri, "status": "indexed", **stamps},
            )
            for version_id, sha, status in versions:
                connection.execute(
                    tables["document_versions"].insert(),
                    {
                        "id": version_id,
                        "document_id": number,
                        "sha256": sha,
                        "status": status,
                        "chunk_count": 1,
                    }
                    | stamps,
                )
                connection.execute(
                    tables["chunks"].insert(),
                    {
                        "id": f"chunk-{version_id}",
                        "document_version_id": version_id,
                        "chunk_index": 0,
                        "char_count": 9,
                    },
                )
            connection.execute(
                tables["documents"].update().where(tables["documents"].c.id == number),
                {"current_version_id": current, "status": versions[-1][2]},
            )
        conversation = {"id": "c" * 32, "title": "t", **stamps}
        connection.execute(table("conversations", *map(column, conversation)).insert(), conversation)
        connection.execute(
            tables["messages"].insert(),
            {"id": 1, "conversation_id": "c" * 32, "role": "assistant", "content": "x", "created_at": now},
        )
        connection.execute(
            tables["citations"].insert(),
            {"id": 1, "message_id": 1, "marker": 1, "chunk_id": "chunk-1", "document_version_id": 1},
        )

    migrate(empty_engine)

    with empty_engine.connect() as connection:
        statuses = dict(connection.execute(text("SELECT id, status FROM document_versions")).all())
        currents = dict(connection.execute(text("SELECT id, current_version_id FROM documents")).all())
        chunks = connection.execute(text("SELECT count(*) FROM chunks")).scalar_one()
        citation = tuple(
            connection.execute(text("SELECT chunk_id, document_version_id FROM citations")).one()
        )
    assert statuses == {
        1: "superseded",  # replaced by version 2, whose ingest deleted its chunks
        2: "indexed",
        3: "indexed",  # its chunks are still in the index: the next ingest deletes them, then marks it
        4: "quarantined",
        5: "superseded",
        6: "deleted",
        7: "indexed",
    }
    # Rebuilding the table on SQLite fired none of its foreign keys' ON DELETE actions.
    assert currents == {1: 2, 2: 4, 3: 6, 4: 7} and chunks == 7 and citation == ("chunk-1", 1)
    with empty_engine.connect() as connection:
        if connection.dialect.name == "sqlite":  # as migrate() does: a rebuild must not cascade
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        with connection.begin():
            command.downgrade(alembic_config(connection), "0003")
        statuses = dict(connection.execute(text("SELECT id, status FROM document_versions")).all())
        chunks = connection.execute(text("SELECT count(*) FROM chunks")).scalar_one()
    assert (statuses[1], statuses[5], statuses[3], chunks) == ("indexed", "indexed", "indexed", 7)


def test_catalog_migrates_itself_on_first_use(tmp_path: Path) -> None:
    with Catalog.open(f"sqlite:///{tmp_path / 'home' / 'catalog.db'}") as catalog:
        assert catalog.list_datasets() == []
        assert current_revision(catalog.engine) == head_revision()


# -- datasets -------------------------------------------------------------------------------------------


def test_same_content_hash_returns_the_same_version(catalog: Catalog) -> None:
    first = add_version(catalog, "sales", HASH_A, source_uri="s3://raw/sales.csv", source_etag="e1")
    again = add_version(catalog, "sales", HASH_A, uri="s3://elsewhere.parquet", status="rejected")
    second = add_version(catalog, "sales", HASH_B)

    assert first.version == 1 and first.dataset_name == "sales"
    assert again == first
    assert (second.version, second.content_hash) == (2, HASH_B)
    assert count_rows(catalog, "dataset_versions") == 2
    assert first.created_at.tzinfo is not None and first.created_at.utcoffset() == UTC.utcoffset(None)


def test_concurrent_registrations_get_distinct_versions(catalog: Catalog) -> None:
    hashes = [HASH_A, HASH_B, HASH_A, HASH_C, HASH_B, "d" * 64]
    with ThreadPoolExecutor(len(hashes)) as pool:
        versions = list(pool.map(lambda content_hash: add_version(catalog, "sales", content_hash), hashes))

    by_hash = {v.content_hash: v.version for v in versions}
    assert sorted(by_hash.values()) == [1, 2, 3, 4]
    assert all(by_hash[v.content_hash] == v.version for v in versions)
    assert count_rows(catalog, "dataset_versions") == 4


def test_versions_are_numbered_per_dataset(catalog: Catalog) -> None:
    add_version(catalog, "sales", HASH_A)
    other = add_version(catalog, "customers", HASH_A)

    assert other.version == 1
    assert [d.name for d in catalog.list_datasets()] == ["customers", "sales"]


def test_get_dataset_version_latest_and_explicit(catalog: Catalog) -> None:
    add_version(catalog, "sales", HASH_A)
    add_version(catalog, "sales", HASH_B)

    assert catalog.get_dataset_version("sales").version == 2
    assert catalog.get_dataset_version("sales", 1).content_hash == HASH_A
    assert [v.version for v in catalog.list_dataset_versions("sales")] == [1, 2]


def test_rejected_versions_are_never_the_latest_registered(catalog: Catalog) -> None:
    add_version(catalog, "sales", HASH_A)
    add_version(catalog, "sales", HASH_B, status="rejected", reason="3 rows fail not_null(id)")
    add_version(catalog, "bad", HASH_C, status="rejected", reason="empty file")

    assert catalog.get_dataset_version("sales").version == 1
    assert catalog.get_dataset_version("sales", 2).reason == "3 rows fail not_null(id)"
    summary = {d.name: (d.latest_version, d.version_count) for d in catalog.list_datasets()}
    assert summary == {"bad": (None, 1), "sales": (1, 2)}
    with pytest.raises(NotFoundError, match=r"'bad' has no registered version; versions: 1 \(rejected\)"):
        catalog.get_dataset_version("bad")


def test_missing_datasets_and_versions_are_named(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="no dataset named 'sales'; the catalog holds no datasets yet"):
        catalog.get_dataset_version("sales")
    add_version(catalog, "sales", HASH_A)
    add_version(catalog, "sales", HASH_B, status="rejected")

    with pytest.raises(NotFoundError, match="no dataset named 'sale'; known datasets: sales"):
        catalog.get_dataset_version("sale")
    with pytest.raises(
        NotFoundError, match=r"'sales' has no version 7; versions: 1 \(registered\), 2 \(rejected\)"
    ):
        catalog.get_dataset_version("sales", 7)
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        catalog.list_dataset_versions("nope")


def test_derived_versions_record_their_parents(catalog: Catalog) -> None:
    raw = add_version(catalog, "raw_sales", HASH_A)
    customers = add_version(catalog, "customers", HASH_B)
    joined = add_version(catalog, "joined", HASH_C, parents=[customers.id, raw.id, raw.id])

    assert joined.parent_ids == tuple(sorted((raw.id, customers.id)))
    assert catalog.list_dataset_versions("joined")[0].parent_ids == joined.parent_ids
    with pytest.raises(NotFoundError, match="no dataset version with id 999"):
        add_version(catalog, "joined", "d" * 64, parents=[999])


def test_validation_runs_point_at_their_dataset_version(catalog: Catalog) -> None:
    version = add_version(catalog, "sales", HASH_A)

    run = catalog.add_validation_run(
        version.id, success=False, results={"failed": ["not_null(id)"]}, quarantine_uri="s3://q/sales"
    )

    assert (run.dataset_version_id, run.success, run.results) == (
        version.id,
        False,
        {"failed": ["not_null(id)"]},
    )
    with pytest.raises(NotFoundError, match="no dataset version with id 999"):
        catalog.add_validation_run(999, success=True, results={})


def test_bad_names_and_statuses_are_refused_before_writing(catalog: Catalog) -> None:
    with pytest.raises(InvalidNameError, match=r"dataset name '  ' is not allowed: use 1-63 lower-case"):
        catalog.ensure_dataset("  ")
    for bad in ("../../x", "kb with space", "kb\nnext", "kb\x1b[31m", ""):
        with pytest.raises(InvalidNameError, match="knowledge base name"):
            catalog.ensure_knowledge_base(bad, embedding_model="m", embedding_dim=3, collection_name="kb_x")
        with pytest.raises(InvalidNameError, match="model name"):
            catalog.add_model_version(bad, trainer="tabular", params={}, metrics={}, artifact_uri="mem://x")
    assert catalog.list_knowledge_bases() == [] and catalog.list_models() == []
    with pytest.raises(ValueError, match="dataset status must be one of registered, rejected; got 'ok'"):
        add_version(catalog, "sales", HASH_A, status="ok")
    assert catalog.list_datasets() == []


# -- models, endpoints, lineage -------------------------------------------------------------------------


def test_model_versions_are_numbered_and_retries_do_not_duplicate(catalog: Catalog) -> None:
    data = add_version(catalog, "sales", HASH_A)

    def train(run: str, f1: float, status: ModelStatus = "registered") -> ModelVersionRecord:
        return catalog.add_model_version(
            "churn",
            trainer="sklearn",
            params={"alpha": 1},
            metrics={"f1": f1},
            artifact_uri=f"s3://models/churn/{run}",
            dataset_version_id=data.id,
            flow_run_id=run,
            status=status,
        )

    first = train("run-1", 0.8)
    retried = train("run-1", 0.8)
    second = train("run-2", 0.4, status="rejected")

    assert retried == first
    assert (first.version, second.version) == (1, 2)
    assert catalog.get_model_version("churn") == first
    assert catalog.get_model_version("churn", 2).status == "rejected"
    with pytest.raises(NotFoundError, match="no model named 'churm'; known models: churn"):
        catalog.get_model_version("churm")
    with pytest.raises(
        NotFoundError, match=r"'churn' has no version 3; versions: 1 \(registered\), 2 \(rejected\)"
    ):
        catalog.get_model_version("churn", 3)


def test_runs_of_one_training_request_at_once_register_one_version(catalog: Catalog) -> None:
    """Two runs of the same request (same artifacts), e.g. a triggered run and one started by hand."""
    data = add_version(catalog, "sales", HASH_A)
    runs = [("run-1", "s3://models/churn/key-a"), ("run-2", "s3://models/churn/key-a")] * 2 + [
        ("run-3", "s3://models/churn/key-b")
    ]

    def train(run: tuple[str, str]) -> ModelVersionRecord:
        return catalog.add_model_version(
            "churn",
            trainer="sklearn",
            params={},
            metrics={},
            artifact_uri=run[1],
            dataset_version_id=data.id,
            flow_run_id=run[0],
        )

    with ThreadPoolExecutor(len(runs)) as pool:
        versions = list(pool.map(train, runs))

    by_artifacts = {version.artifact_uri: version.version for version in versions}
    assert sorted(by_artifacts.values()) == [1, 2]
    assert all(by_artifacts[version.artifact_uri] == version.version for version in versions)
    assert count_rows(catalog, "model_versions") == 2


def test_endpoint_status_and_the_active_endpoint(catalog: Catalog) -> None:
    model = catalog.add_model_version("churn", trainer="hf", params={}, metrics={}, artifact_uri="s3://m/1")
    assert catalog.active_endpoint("churn") is None

    failed = catalog.add_endpoint(model.id, backend="vllm", url="http://gpu-1:8000/v1")
    catalog.set_endpoint_status(failed.id, "failed", log_tail="CUDA out of memory")
    endpoint = catalog.add_endpoint(model.id, backend="transformers", url="http://cpu:8000/v1")
    assert catalog.active_endpoint("churn") is None
    active = catalog.set_endpoint_status(endpoint.id, "active")

    assert (active.status, active.model_name, active.model_version) == ("active", "churn", 1)
    assert catalog.active_endpoint("churn") == active
    assert active.updated_at >= active.created_at
    with pytest.raises(NotFoundError, match="no endpoint with id 999"):
        catalog.set_endpoint_status(999, "stopped")
    with pytest.raises(NotFoundError, match="no model version with id 999"):
        catalog.add_endpoint(999, backend="openai", url="http://x/v1")


def test_lineage_of_an_endpoint_reaches_the_source_file(catalog: Catalog) -> None:
    data = add_version(catalog, "sales", HASH_A, source_uri="s3://raw/sales.csv", source_etag='"9b2cf5"')
    model = catalog.add_model_version(
        "churn", trainer="sklearn", params={}, metrics={}, artifact_uri="s3://m/1", dataset_version_id=data.id
    )
    endpoint = catalog.add_endpoint(model.id, backend="vllm", url="http://gpu-1:8000/v1", status="active")

    lineage = catalog.lineage_of_endpoint(endpoint.id)

    assert (lineage.model_name, lineage.model_version, lineage.artifact_uri) == ("churn", 1, "s3://m/1")
    assert (lineage.dataset_name, lineage.dataset_version, lineage.content_hash) == ("sales", 1, HASH_A)
    assert (lineage.source_uri, lineage.source_etag) == ("s3://raw/sales.csv", '"9b2cf5"')
    with pytest.raises(NotFoundError, match="no endpoint with id 999"):
        catalog.lineage_of_endpoint(999)


def test_dataset_versions_used_by_a_model_cannot_be_deleted(catalog: Catalog) -> None:
    data = add_version(catalog, "sales", HASH_A)
    catalog.add_model_version(
        "churn", trainer="sklearn", params={}, metrics={}, artifact_uri="s3://m/1", dataset_version_id=data.id
    )

    with pytest.raises(IntegrityError), catalog.engine.begin() as connection:
        connection.execute(text("DELETE FROM dataset_versions WHERE id = :id"), {"id": data.id})


# -- knowledge bases, documents, chunks -----------------------------------------------------------------


def ensure_kb(catalog: Catalog, name: str = "handbook") -> None:
    catalog.ensure_knowledge_base(
        name, embedding_model="all-MiniLM-L6-v2", embedding_dim=384, collection_name=f"kb_{name}_minilm"
    )


def test_knowledge_bases_are_ensured_once_and_keep_their_embedding(catalog: Catalog) -> None:
    ensure_kb(catalog)
    ensure_kb(catalog)
    moved = catalog.ensure_knowledge_base(
        "handbook",
        embedding_model="all-MiniLM-L6-v2",
        embedding_dim=384,
        collection_name="kb_handbook_minilm",
        source_uri="s3://docs/handbook/",
    )

    assert catalog.get_knowledge_base("handbook") == moved
    assert moved.source_uri == "s3://docs/handbook/"
    assert count_rows(catalog, "knowledge_bases") == 1
    with pytest.raises(CatalogError, match=r"indexed with all-MiniLM-L6-v2 \(384 dims\)"):
        catalog.ensure_knowledge_base(
            "handbook", embedding_model="bge-m3", embedding_dim=1024, collection_name="kb_handbook_bge"
        )
    with pytest.raises(
        NotFoundError, match="no knowledge base named 'hand'; known knowledge bases: handbook"
    ):
        catalog.get_knowledge_base("hand")


def test_document_versions_are_upserted_by_content(catalog: Catalog) -> None:
    ensure_kb(catalog)
    first = catalog.record_document_version(
        "handbook", "s3://docs/a.pdf", HASH_A, etag="e1", status="indexed"
    )
    again = catalog.record_document_version(
        "handbook", "s3://docs/a.pdf", HASH_A, etag="e1", status="indexed"
    )
    changed = catalog.record_document_version(
        "handbook", "s3://docs/a.pdf", HASH_B, etag="e2", status="quarantined", reason="encrypted PDF"
    )

    assert again.version_id == first.version_id and again.id == first.id
    assert (changed.id, changed.sha256, changed.status, changed.reason) == (
        first.id,
        HASH_B,
        "quarantined",
        "encrypted PDF",
    )
    assert changed.version_id != first.version_id
    reverted = catalog.record_document_version(
        "handbook",
        "s3://docs/a.pdf",
        HASH_A,
        etag="e3",
        status="indexed",
        chunk_count=12,
        parser="pypdf",
        timings={"parse_s": 0.4},
    )
    assert (reverted.version_id, reverted.etag, reverted.chunk_count, reverted.timings) == (
        first.version_id,
        "e3",
        12,
        {"parse_s": 0.4},
    )
    assert count_rows(catalog, "document_versions") == 2
    assert count_rows(catalog, "documents") == 1


def test_documents_are_listed_by_status_and_marked_deleted(catalog: Catalog) -> None:
    ensure_kb(catalog)
    catalog.record_document_version("handbook", "s3://docs/b.md", HASH_B, etag=None, status="indexed")
    catalog.record_document_version("handbook", "s3://docs/a.md", HASH_A, etag=None, status="indexed")
    catalog.record_document_version("handbook", "s3://docs/c.md", HASH_C, etag=None, status="quarantined")

    assert [d.uri for d in catalog.documents("handbook")] == [
        "s3://docs/a.md",
        "s3://docs/b.md",
        "s3://docs/c.md",
    ]
    assert [d.uri for d in catalog.documents("handbook", status="indexed")] == [
        "s3://docs/a.md",
        "s3://docs/b.md",
    ]
    deleted = catalog.mark_document_deleted("handbook", "s3://docs/a.md")
    assert catalog.mark_document_deleted("handbook", "s3://docs/a.md") == deleted
    assert (deleted.status, deleted.sha256) == ("deleted", HASH_A)
    assert [d.uri for d in catalog.documents("handbook", status="deleted")] == ["s3://docs/a.md"]
    with pytest.raises(
        NotFoundError, match=re.escape("knowledge base 'handbook' has no document 's3://docs/z.md'")
    ):
        catalog.mark_document_deleted("handbook", "s3://docs/z.md")
    with pytest.raises(NotFoundError, match="no knowledge base named 'wiki'"):
        catalog.documents("wiki")


def test_a_batch_of_indexed_documents_is_recorded_in_one_write(catalog: Catalog) -> None:
    ensure_kb(catalog)
    catalog.record_document_version(
        "handbook", "s3://docs/b.md", HASH_A, etag="old", status="quarantined", reason="encrypted PDF"
    )

    def chunks(prefix: str, count: int) -> list[ChunkRecord]:
        return [
            ChunkRecord(id=f"{prefix}{i:02d}", chunk_index=i, char_count=10 + i, page=1) for i in range(count)
        ]

    batch = [
        IndexedDocument("s3://docs/a.md", HASH_A, "e1", "markdown", chunks("a", 3)),
        IndexedDocument("s3://docs/b.md", HASH_B, "e2", "markdown", chunks("b", 2)),  # new version of b
    ]
    records = catalog.record_indexed_documents("handbook", batch)
    again = catalog.record_indexed_documents("handbook", batch)  # a retried task changes nothing

    assert [(r.uri, r.sha256, r.status, r.chunk_count, r.reason) for r in records] == [
        ("s3://docs/a.md", HASH_A, "indexed", 3, None),
        ("s3://docs/b.md", HASH_B, "indexed", 2, None),
    ]
    assert [(r.id, r.version_id) for r in again] == [(r.id, r.version_id) for r in records]
    assert catalog.documents("handbook", uris=["s3://docs/b.md", "s3://docs/z.md"]) == [records[1]]
    assert count_rows(catalog, "documents") == 2
    assert count_rows(catalog, "document_versions") == 3  # b's quarantined version is kept
    assert count_rows(catalog, "chunks") == 5
    sources = catalog.chunk_sources(["a00", "b01"])
    assert (sources["a00"].doc_uri, sources["b01"].doc_sha256) == ("s3://docs/a.md", HASH_B)


def test_a_replaced_version_is_superseded_when_its_successor_is_recorded(catalog: Catalog) -> None:
    """Issue 19: after one document changed, the catalog kept its old version 'indexed' with its chunks."""
    ensure_kb(catalog)

    def indexed(uri: str, sha: str, prefix: str, count: int) -> IndexedDocument:
        chunks = [ChunkRecord(id=f"{prefix}{i}", chunk_index=i, char_count=10) for i in range(count)]
        return IndexedDocument(uri, sha, None, "markdown", chunks)

    catalog.record_indexed_documents(
        "handbook", [indexed("s3://docs/a.md", HASH_A, "a1-", 3), indexed("s3://docs/b.md", HASH_A, "b1-", 2)]
    )
    catalog.record_indexed_documents("handbook", [indexed("s3://docs/a.md", HASH_B, "a2-", 4)])  # a changed
    catalog.record_document_version("handbook", "s3://docs/b.md", HASH_B, etag=None, status="quarantined")

    # b's new version was quarantined: its old version's chunks are still in the index until an ingest
    # deletes them, so the catalog still says so, and lists it as replaced.
    counts = catalog.knowledge_base_counts("handbook")
    assert counts.documents == {"indexed": 1, "quarantined": 1}
    assert counts.versions == {"indexed": 2, "quarantined": 1, "superseded": 1}
    assert counts.indexed_chunks == 4 + 2
    assert set(catalog.indexed_chunk_ids("handbook")) == {f"a2-{i}" for i in range(4)} | {"b1-0", "b1-1"}
    [replaced] = catalog.replaced_versions("handbook")
    assert (replaced.uri, replaced.sha256, replaced.current_sha256, replaced.current_status) == (
        "s3://docs/b.md",
        HASH_A,
        HASH_B,
        "quarantined",
    )

    assert catalog.mark_versions_superseded([replaced.version_id]) == 1
    assert catalog.mark_versions_superseded([replaced.version_id]) == 0  # repeating it changes nothing
    assert catalog.replaced_versions("handbook") == []
    assert catalog.knowledge_base_counts("handbook").indexed_chunks == 4
    assert count_rows(catalog, "chunks") == 3 + 2 + 4  # superseded versions keep their rows for citations
    # a reverted document: its first version is current and indexed again, the second superseded
    catalog.record_indexed_documents("handbook", [indexed("s3://docs/a.md", HASH_A, "a1-", 3)])
    assert set(catalog.indexed_chunk_ids("handbook")) == {"a1-0", "a1-1", "a1-2"}
    # deleting a document supersedes nothing of another, and keeps its current version 'deleted'
    catalog.mark_document_deleted("handbook", "s3://docs/a.md", reason="removed by ods kb verify --repair")
    counts = catalog.knowledge_base_counts("handbook")
    assert counts.versions == {"deleted": 1, "quarantined": 1, "superseded": 2}
    assert counts.indexed_chunks == 0
    [gone] = catalog.documents("handbook", "deleted")
    assert gone.reason == "removed by ods kb verify --repair"


def test_chunks_belong_to_their_document_version(catalog: Catalog) -> None:
    ensure_kb(catalog)
    document = catalog.record_document_version(
        "handbook", "s3://docs/a.md", HASH_A, etag=None, status="indexed"
    )
    assert document.version_id is not None
    chunks = [ChunkRecord(id=f"chunk{i:02d}", chunk_index=i, char_count=100 + i, page=1) for i in range(3)]

    assert catalog.add_chunks(document.version_id, chunks) == 3
    assert (
        catalog.add_chunks(document.version_id, [*chunks, ChunkRecord("chunk03", 3, 50, heading="End")]) == 1
    )

    with catalog.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.id, d.uri, v.sha256 FROM chunks c "
                "JOIN document_versions v ON v.id = c.document_version_id "
                "JOIN documents d ON d.id = v.document_id ORDER BY c.chunk_index"
            )
        ).all()
    assert [tuple(row) for row in rows] == [(f"chunk{i:02d}", "s3://docs/a.md", HASH_A) for i in range(4)]
    with pytest.raises(NotFoundError, match="no document version with id 999"):
        catalog.add_chunks(999, chunks)
    with pytest.raises(IntegrityError), catalog.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO chunks (id, document_version_id, chunk_index, char_count) VALUES ('x', 999, 0, 1)"
            )
        )


# -- conversations --------------------------------------------------------------------------------------


def test_conversation_round_trip_with_citations(catalog: Catalog) -> None:
    ensure_kb(catalog)
    document = catalog.record_document_version(
        "handbook", "s3://docs/a.md", HASH_A, etag=None, status="indexed"
    )
    assert document.version_id is not None
    catalog.add_chunks(document.version_id, [ChunkRecord("chunk00", 0, 120)])
    data = add_version(catalog, "sales", HASH_B)
    conversation = catalog.create_conversation("Refund policy")

    catalog.add_message(conversation.id, "user", "How long do refunds take?")
    answer = catalog.add_message(
        conversation.id,
        "assistant",
        "Five days [1]; 42 refunds last month [2].",
        sql="SELECT count(*) FROM sales",
        model="SmolLM2-135M-Instruct",
        usage={"prompt_tokens": 120, "completion_tokens": 14},
        citations=[
            CitationRecord(2, dataset_version_id=data.id),
            CitationRecord(1, chunk_id="chunk00", document_version_id=document.version_id),
        ],
    )

    loaded = catalog.get_conversation(conversation.id)
    assert len(conversation.id) == 32 and loaded.title == "Refund policy"
    assert [(m.role, m.content) for m in loaded.messages] == [
        ("user", "How long do refunds take?"),
        ("assistant", "Five days [1]; 42 refunds last month [2]."),
    ]
    assert (loaded.messages[1].id, loaded.messages[1].sql) == (answer.id, "SELECT count(*) FROM sales")
    assert loaded.messages[1].citations == (
        CitationRecord(1, chunk_id="chunk00", document_version_id=document.version_id),
        CitationRecord(2, dataset_version_id=data.id),
    )
    assert loaded.messages[1].usage == {"prompt_tokens": 120, "completion_tokens": 14}
    assert loaded.updated_at >= loaded.created_at
    with pytest.raises(NotFoundError, match="citation names unknown chunk nope"):
        catalog.add_message(conversation.id, "assistant", "x", citations=[CitationRecord(1, chunk_id="nope")])
    with pytest.raises(NotFoundError, match="no conversation with id 'missing'"):
        catalog.add_message("missing", "user", "hello")


def test_conversations_are_listed_by_activity_and_deleted_with_their_messages(catalog: Catalog) -> None:
    older = catalog.create_conversation("older")
    newer = catalog.create_conversation("newer")
    catalog.add_message(older.id, "user", "still here?", citations=[CitationRecord(1)])

    assert [c.title for c in catalog.list_conversations()] == ["older", "newer"]
    catalog.delete_conversation(older.id)

    assert [c.id for c in catalog.list_conversations()] == [newer.id]
    assert count_rows(catalog, "messages") == 0
    assert count_rows(catalog, "citations") == 0
    with pytest.raises(NotFoundError, match=f"no conversation with id '{older.id}'"):
        catalog.get_conversation(older.id)
    with pytest.raises(NotFoundError, match=f"no conversation with id '{older.id}'"):
        catalog.delete_conversation(older.id)


# -- failures a person sees -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", "postgresql+psycopg://postgres@127.0.0.1:1/x"),
        ("postgresql://ods:s3cret@127.0.0.1:1/x", "postgresql+psycopg://ods:***@127.0.0.1:1/x"),
    ],
)
def test_unreachable_catalog_fails_fast_with_one_line(url: str, shown: str) -> None:
    started = time.perf_counter()
    with pytest.raises(CatalogError) as caught, Catalog.open(url, connect_timeout_s=2) as catalog:
        catalog.list_datasets()

    message = str(caught.value)
    assert time.perf_counter() - started < 5
    assert "\n" not in message and "s3cret" not in message
    assert message.startswith(f"cannot open catalog {shown}: connection refused")
    assert message.endswith("check ODS_CATALOG__URL and that the database is running")


def test_sqlite_directory_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")

    with pytest.raises(CatalogError, match=re.escape(f"cannot create catalog directory {blocker / 'sub'}")):
        Catalog.open(f"sqlite:///{blocker / 'sub' / 'catalog.db'}")


def test_unsupported_catalog_url_is_refused() -> None:
    with pytest.raises(CatalogError, match="names unsupported database 'mysql'"):
        create_catalog_engine("mysql://root:pw@localhost/ods")


def test_importing_the_catalog_connects_to_nothing() -> None:
    probe = (
        "import sys, ods.adapters.catalog, ods.settings; "
        "print('psycopg' in sys.modules, ods.settings.get_settings.cache_info().currsize)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "0"]
