"""Opening and migrating the catalog database: a SQLite file by default, PostgreSQL (psycopg 3) in a cluster.

Nothing here connects until asked. Failures become one-line :class:`CatalogError` messages that name the
catalog URL with its password masked.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from ods.errors import CatalogError
from ods.settings import mask_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY = 0x6F64735F636174
"""PostgreSQL advisory-lock key serialising concurrent migrations ("ods_cat" in ASCII)."""

_URL_HINT = "check ODS_CATALOG__URL and that the database is running"


def create_catalog_engine(url: str, *, echo: bool = False, connect_timeout_s: float = 5.0) -> Engine:
    """An engine for the catalog at ``url``; connects lazily.

    SQLite: the file's directory is created, and every connection enables foreign keys and WAL and waits
    up to ``connect_timeout_s`` for a lock. PostgreSQL: psycopg 3 (a bare ``postgresql://`` URL uses it),
    giving up after ``connect_timeout_s`` seconds.
    """
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            _create_sqlite_directory(parsed, url)
            engine = create_engine(parsed, echo=echo, connect_args={"timeout": connect_timeout_s})
            event.listen(
                engine, "connect", partial(_configure_sqlite_connection, timeout_s=connect_timeout_s)
            )
            return engine
        if backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            return create_engine(
                parsed,
                echo=echo,
                pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, math.ceil(connect_timeout_s))},
            )
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise CatalogError(
            f"cannot use catalog URL {mask_url(url)}: {error}; check ODS_CATALOG__URL"
        ) from None
    raise CatalogError(
        f"catalog URL {mask_url(url)} names unsupported database {backend!r}; use sqlite:///path/catalog.db "
        "or postgresql+psycopg://user:password@host:5432/db in ODS_CATALOG__URL"
    )


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise CatalogError(
            f"catalog URL {mask_url(url)!r} is not a database URL; set ODS_CATALOG__URL to e.g. "
            "postgresql+psycopg://user:password@host:5432/db"
        ) from None


def _create_sqlite_directory(parsed: URL, url: str) -> None:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    directory = Path(database).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CatalogError(
            f"cannot create catalog directory {directory} for {mask_url(url)}: {error.strerror or error}; "
            "check ODS_CATALOG__URL or ODS_HOME"
        ) from None


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any, *, timeout_s: float) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        _use_write_ahead_log(cursor, timeout_s)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _use_write_ahead_log(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL (a lasting property of the file), waiting for concurrent openers.

    SQLite answers "database is locked" without calling the busy handler when another connection holds
    the file during the switch, so the wait is done here. A file that cannot use WAL keeps its mode.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


@contextmanager
def translate_errors(engine: Engine) -> Iterator[None]:
    """Turn database failures into one-line CatalogErrors naming the masked URL.

    IntegrityError passes through untouched: callers resolve unique-key races by retrying.
    """
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as error:
        raise CatalogError(describe_failure(engine, error)) from error


def describe_failure(engine: Engine, error: DBAPIError) -> str:
    """A one-line account of ``error``: what failed, on which catalog, and what to check."""
    url = mask_url(engine.url.render_as_string(hide_password=False))
    reason = _driver_reason(error)
    if error.statement is None or error.connection_invalidated:
        return f"cannot open catalog {url}: {reason}; {_URL_HINT}"
    return f"catalog {url} failed: {reason}; run `ods init` if the catalog schema is out of date"


def _driver_reason(error: DBAPIError) -> str:
    original = str(error.orig).strip() or type(error.orig).__name__
    first_line = original.splitlines()[0]
    reason = first_line.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip().rstrip(".")
    return reason[:1].lower() + reason[1:] if reason[1:2].islower() else reason


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations, built in code (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise CatalogError(f"no catalog migrations found in {MIGRATIONS_DIR}; reinstall one-data-studio")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the catalog database is at (``None`` for an empty database)."""
    with translate_errors(engine), engine.connect() as connection:
        return _revision_of(connection)


def migrate(engine: Engine) -> str:
    """Upgrade the catalog to the newest revision and return it; a quick no-op when already there.

    Concurrent callers are serialised (an advisory lock on PostgreSQL, the write lock on SQLite) and each
    re-reads the revision under the lock, so only one of them runs the migrations.
    """
    head = head_revision()
    with translate_errors(engine), engine.connect() as connection:
        if _revision_of(connection) == head:
            return head
        connection.rollback()
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Alembic rebuilds a SQLite table to change a constraint (copy, drop, rename), and dropping
            # a table fires the ON DELETE actions of the foreign keys that point at it: rebuilding
            # document_versions would delete every chunk. The pragma takes effect outside a transaction.
            _set_sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                _lock_for_migration(connection)
                if _revision_of(connection) != head:
                    command.upgrade(alembic_config(connection), "head")
                    if sqlite:
                        _check_sqlite_foreign_keys(connection)
        finally:
            if sqlite:
                _set_sqlite_foreign_keys(connection, on=True)
    return head


def _set_sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()  # ends SQLAlchemy's autobegun transaction (SQLite itself opened none)


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    """Refuse a migration that left a row pointing at nothing (checked while enforcement was off)."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise CatalogError(
            f"catalog migration left {len(broken)} row(s) with a broken foreign key (first: table "
            f"{broken[0][0]}, row {broken[0][1]} → {broken[0][2]}); nothing was changed"
        )


def begin_write(connection: Connection) -> None:
    """Take SQLite's write lock at the start of a write transaction (waiting up to the busy timeout).

    pysqlite otherwise starts the transaction at the first INSERT, after the reads that decided what to
    write, so two writers could both read "version 3 is next". PostgreSQL needs nothing here: writers
    lock the rows they depend on (``SELECT ... FOR UPDATE``).
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _lock_for_migration(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    else:
        begin_write(connection)
