"""A throwaway PostgreSQL database for the tests that need the real server at 127.0.0.1:5432.

Without a server the tests are skipped with a visible reason, except under CI=true where a missing server
is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
"""The maintenance database used to create and drop throwaway databases (trust auth, user postgres)."""


@contextmanager
def temporary_database(prefix: str = "ods_test_") -> Iterator[str]:
    """Create an empty database named ``<prefix><random hex>``, yield its URL, then drop it.

    Skips (or fails under CI=true) when the server cannot be reached.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"{prefix}{secrets.token_hex(6)}"
    try:
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0]
            message = (
                f"PostgreSQL at {ADMIN_URL} is unreachable ({reason}); start it to run the postgres tests"
            )
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database on the local PostgreSQL server, dropped after the test session."""
    with temporary_database() as url:
        yield url


@contextmanager
def catalog_engine(backend: str, folder: Path, prefix: str = "ods_test_") -> Iterator[Engine]:
    """An engine on an empty catalog database: a SQLite file in ``folder`` or (``backend`` "postgres") a
    throwaway PostgreSQL database; disposed (and the database dropped) afterwards."""
    from ods.adapters.catalog import create_catalog_engine

    if backend == "sqlite":
        engine = create_catalog_engine(f"sqlite:///{folder / 'catalog.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with temporary_database(prefix) as url:
        engine = create_catalog_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
