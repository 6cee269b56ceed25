"""The write side of datasets in `ods serve`: register, describe and tag, archive and restore, and
short-lived read access to a version's Parquet, as a client meets them.

The catalog side (migration 0007, tags and archiving) runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect

from ods.adapters.catalog import Catalog, create_catalog_engine, current_revision, migrate
from ods.adapters.catalog.database import alembic_config
from ods.adapters.catalog.datasets import InvalidTagError
from ods.errors import NotFoundError
from tests.support.postgres import temporary_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# -- the catalog side, on both backends ---------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_catalog_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
        yield engine
        engine.dispose()
        return
    with temporary_database("ods_test_datasets_") as url:
        engine = create_catalog_engine(url)
        yield engine
        engine.dispose()


def _dataset_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("datasets")}


def test_migration_0007_adds_tags_and_archived_at_and_takes_them_back(empty_engine: Engine) -> None:
    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0006")
        connection.exec_driver_sql(
            "INSERT INTO datasets (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)"
        )
    assert {"tags", "archived_at"}.isdisjoint(_dataset_columns(empty_engine))

    with empty_engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0007")
    assert {"description", "tags", "archived_at"} <= _dataset_columns(empty_engine)
    old = Catalog(empty_engine).get_dataset("old")
    assert (old.tags, old.archived_at, old.description) == ((), None, None)

    with empty_engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0006")
    assert {"tags", "archived_at"}.isdisjoint(_dataset_columns(empty_engine))
    assert current_revision(empty_engine) == "0006"
    migrate(empty_engine)
    assert "tags" in _dataset_columns(empty_engine)


def test_the_catalog_tags_archives_and_restores_datasets(empty_engine: Engine) -> None:
    catalog = Catalog(empty_engine)
    catalog.ensure_dataset("sales", "orders")
    catalog.ensure_dataset("customers")

    tagged = catalog.update_dataset("sales", tags=["finance", "daily", "finance"])
    assert tagged.tags == ("daily", "finance") and tagged.description == "orders"
    assert catalog.update_dataset("sales", description="orders by day").tags == ("daily", "finance")
    assert [d.name for d in catalog.list_datasets(tags=["finance"])] == ["sales"]
    assert catalog.list_datasets(tags=["finance", "hr"]) == []
    with pytest.raises(InvalidTagError, match="tag 'Bad Tag' is not allowed"):
        catalog.update_dataset("sales", tags=["Bad Tag"])
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        catalog.update_dataset("nope", tags=["x"])

    archived = catalog.archive_dataset("sales")
    assert archived.archived_at is not None
    assert catalog.archive_dataset("sales").archived_at == archived.archived_at
    assert [d.name for d in catalog.list_datasets(include_archived=False)] == ["customers"]
    assert [d.name for d in catalog.list_datasets()] == ["customers", "sales"]
    assert catalog.restore_dataset("sales").archived_at is None
    assert [d.name for d in catalog.list_datasets(include_archived=False)] == ["customers", "sales"]
