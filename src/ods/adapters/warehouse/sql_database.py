"""``SqlDatabaseWarehouse``: read-only Text-to-SQL over an allowlist of tables in an external database."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ods.adapters.closing import Closeable
from ods.adapters.warehouse.base import (
    DEFAULT_MAX_ROWS,
    QueryLimitError,
    QueryResult,
    WarehouseQueryError,
    check_guarded,
    first_line,
    timeout_error,
    too_large_error,
)
from ods.adapters.warehouse.query_process import QueryLimits, row_bytes
from ods.domain.sql_guard import GuardedQuery, guard_sql
from ods.domain.text_to_sql import MAX_SAMPLE_ROWS, TableDescription, describe_table
from ods.errors import NotFoundError, SettingsError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine


_POSTGRES_QUERY_CANCELED = "57014"
_POSTGRES_OUT_OF_MEMORY = "53200"
_POSTGRES_TEMP_FILE_LIMIT = "53400"  # configuration_limit_exceeded: temp_file_limit among others
_FETCH_ROWS = 256
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "duckdb": "duckdb"}

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class SqlDatabaseWarehouse(Closeable):
    """Read-only Text-to-SQL over an allowlist of tables in an external database (PostgreSQL, SQLite).

    Each query opens a transaction marked READ ONLY with ``statement_timeout`` set for it (PostgreSQL), and
    rolls it back afterwards; connections also default to read-only transactions, so nothing this class
    runs can write even if it were not guarded. On PostgreSQL the transaction also lowers ``work_mem`` to
    a sixteenth of the memory limit (never raising the server's own value; each sort or hash step of a
    query may use that much) and, where the role may set it (a superuser, or ``GRANT SET ON PARAMETER
    temp_file_limit``), ``temp_file_limit`` to the temporary-disk limit; otherwise that one is the DBA's
    (``ALTER ROLE reader SET temp_file_limit = ...``). Rows come from a server-side cursor in batches, up to
    the row cap and the result-byte cap, so a wide result never lands in this process whole.
    """

    def __init__(
        self,
        engine: Engine,
        tables: Sequence[str],
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        sample_rows: int = MAX_SAMPLE_ROWS,
        limits: QueryLimits | None = None,
    ) -> None:
        if isinstance(tables, str) or not tables:
            raise SettingsError(
                "the warehouse needs a list of tables questions may read: set ODS_WAREHOUSE__TABLES, "
                'e.g. ["sales", "analytics.orders"]'
            )
        bad = [name for name in tables if not _TABLE_NAME.fullmatch(name)]
        if bad:
            raise SettingsError(
                f"ODS_WAREHOUSE__TABLES holds {', '.join(map(repr, bad))}: give table or schema.table names"
            )
        self._engine = engine
        self._names = tuple(dict.fromkeys(tables))
        self._max_rows = max_rows
        self._sample_rows = sample_rows
        self._descriptions: list[TableDescription] | None = None
        self.dialect = _SQLGLOT_DIALECTS.get(engine.dialect.name, engine.dialect.name)
        self.limits = limits or QueryLimits()
        self._may_limit_temp_files: bool | None = None  # learnt on the first PostgreSQL transaction

    @classmethod
    def open(
        cls,
        url: str,
        tables: Sequence[str],
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        connect_timeout_s: float = 5.0,
        limits: QueryLimits | None = None,
    ) -> SqlDatabaseWarehouse:
        """A warehouse on the database at ``url``; PostgreSQL sessions default to read-only transactions."""
        from sqlalchemy import create_engine

        connect_args: dict[str, Any] = {}
        if url.startswith("postgresql"):
            connect_args = {
                "connect_timeout": max(1, round(connect_timeout_s)),
                "options": "-c default_transaction_read_only=on",
                "application_name": "ods-warehouse",
            }
        return cls(
            create_engine(url, connect_args=connect_args, pool_pre_ping=True),
            tables,
            max_rows=max_rows,
            limits=limits,
        )

    @contextmanager
    def read_only(self, *, timeout_s: float) -> Iterator[Connection]:
        """A connection inside a READ ONLY transaction with ``statement_timeout``; always rolled back."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            connection = self._engine.connect()
        except SQLAlchemyError as error:
            raise WarehouseQueryError(
                f"cannot reach the warehouse database: {first_line(getattr(error, 'orig', error))}; "
                "check ODS_WAREHOUSE__URL and that the server is up"
            ) from None
        with connection:
            transaction = connection.begin()
            try:
                if self.dialect == "postgres":
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                    connection.exec_driver_sql(
                        f"SET LOCAL statement_timeout = {max(1, round(timeout_s * 1000))}"
                    )
                    self._limit_postgres_resources(connection)
                elif self.dialect == "sqlite":
                    connection.exec_driver_sql("PRAGMA query_only = ON")
                yield connection
            finally:
                transaction.rollback()

    def _limit_postgres_resources(self, connection: Connection) -> None:
        """Lower ``work_mem`` (never raising the server's value) and, where allowed, ``temp_file_limit``."""
        work_mem_kb = max(64, self.limits.memory_limit_mb * 1024 // 16)
        connection.exec_driver_sql(
            "SELECT set_config('work_mem', LEAST(pg_size_bytes(current_setting('work_mem')) / 1024, "
            f"{work_mem_kb})::text || 'kB', true)"
        )
        if self._may_limit_temp_files is None:
            self._may_limit_temp_files = bool(
                connection.exec_driver_sql(
                    "SELECT CASE WHEN current_setting('server_version_num')::int >= 150000 "
                    "THEN has_parameter_privilege('temp_file_limit', 'SET') "
                    "ELSE (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) END"
                ).scalar()
            )
        if self._may_limit_temp_files:
            temp_kb = self.limits.max_temp_mb * 1024
            # -1 is unlimited on the server; 0 here means no temporary files at all.
            connection.exec_driver_sql(
                "SELECT set_config('temp_file_limit', (CASE WHEN current_setting('temp_file_limit')::int < 0 "
                f"THEN {temp_kb} ELSE LEAST(current_setting('temp_file_limit')::int, {temp_kb}) END)::text, "
                "true)"
            )

    def tables(self) -> list[TableDescription]:
        """The allowlisted tables with reflected column types and a few sample rows (cached)."""
        if self._descriptions is None:
            self._descriptions = [self._describe(name) for name in self._names]
        return list(self._descriptions)

    def _describe(self, qualified: str) -> TableDescription:
        from sqlalchemy import MetaData, Table, inspect, select
        from sqlalchemy.exc import NoSuchTableError

        schema, _, name = qualified.rpartition(".")
        with self.read_only(timeout_s=10.0) as connection:
            try:
                table = Table(name, MetaData(), schema=schema or None, autoload_with=connection)
            except NoSuchTableError:
                known = inspect(connection).get_table_names(schema=schema or None)
                raise NotFoundError(
                    f"table {qualified!r} of ODS_WAREHOUSE__TABLES does not exist in the warehouse database; "
                    f"tables there: {', '.join(sorted(known)) or 'none'}"
                ) from None
            rows = connection.execute(select(table).limit(self._sample_rows)).mappings().all()
        return describe_table(
            qualified,
            source=f"warehouse table {qualified}",
            column_types=[(column.name, str(column.type)) for column in table.columns],
            sample_rows=[dict(row) for row in rows],
        )

    def guard(self, sql: str, *, max_rows: int | None = None) -> GuardedQuery:
        return guard_sql(
            sql, allowed_tables=self._names, dialect=self.dialect, max_rows=max_rows or self._max_rows
        )

    def run(self, guarded: GuardedQuery, *, timeout_s: float) -> QueryResult:
        from sqlalchemy.exc import DBAPIError

        checked = self.guard(check_guarded(guarded, timeout_s).sql, max_rows=guarded.limit)
        started = time.perf_counter()
        try:
            with self.read_only(timeout_s=timeout_s) as connection:
                # no_parameters: the SQL goes to the driver as-is ('%' in LIKE is not a placeholder);
                # stream_results: a server-side cursor, so rows arrive in batches, not all at once.
                cursor = connection.exec_driver_sql(
                    checked.sql, execution_options={"no_parameters": True, "stream_results": True}
                )
                columns = tuple(cursor.keys())
                rows: list[tuple[Any, ...]] = []
                size = 0
                deadline = time.monotonic() + timeout_s
                while len(rows) < checked.limit:
                    if rows and self.dialect == "postgres":
                        # statement_timeout counts per FETCH: what is left of the query's time is the next
                        # one's limit, so a query that streams its rows slowly still stops on time.
                        left_ms = round((deadline - time.monotonic()) * 1000)
                        if left_ms < 1:
                            raise timeout_error(timeout_s, " by the database")
                        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {left_ms}")
                    batch = cursor.fetchmany(min(_FETCH_ROWS, checked.limit - len(rows)))
                    if not batch:
                        break
                    for row in batch:
                        size += row_bytes(row)
                        if size > self.limits.max_result_bytes:
                            raise too_large_error(self.limits, f"{len(rows)} row(s) fitted before it")
                        rows.append(tuple(row))
                cursor.close()
        except DBAPIError as error:
            state = getattr(error.orig, "sqlstate", None)
            if state == _POSTGRES_QUERY_CANCELED:
                raise timeout_error(timeout_s, " by the database") from None
            if state in (_POSTGRES_OUT_OF_MEMORY, _POSTGRES_TEMP_FILE_LIMIT):
                raise QueryLimitError(
                    f"the warehouse database stopped the query at a limit ({first_line(error.orig or error)}; "
                    "ODS_WAREHOUSE__MAX_TEMP_MB sets temp_file_limit where the role may); "
                    "ask for less (filter, aggregate)"
                ) from None
            raise WarehouseQueryError(
                f"the warehouse database could not run the query: {first_line(error.orig or error)}"
            ) from None
        return QueryResult(
            sql=checked.sql,
            columns=columns,
            rows=rows,
            row_count=len(rows),
            truncated=guarded.capped and len(rows) >= checked.limit,
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        self._engine.dispose()
