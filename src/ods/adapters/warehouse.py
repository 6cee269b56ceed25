"""Warehouses: where Text-to-SQL queries run, behind one narrow protocol.

``DuckDBWarehouse`` is an in-memory DuckDB holding one relation per registered dataset version, scanned
from its Parquet through a pyarrow dataset (local directory or S3, whatever the object store is), so DuckDB
itself never needs to open a file or the network. It runs in a query process of its own
(``ods.adapters.duckdb_process``) under the limits of ``ODS_WAREHOUSE__*``: memory (DuckDB's
``memory_limit``, and a hard cap on the process), threads, temporary disk, result bytes and time; a query
past one stops with an error naming the limit, and the machine's memory is never at stake. After the
relations are registered the database is hardened: external access off, extensions off, Python replacement
scans off, configuration locked. So even SQL that slipped past the guard cannot read files, attach
databases or change a setting.

``SqlDatabaseWarehouse`` reads an external database (PostgreSQL in a cluster) through SQLAlchemy: every
query runs in a READ ONLY transaction with its own ``statement_timeout`` (and ``work_mem``, and
``temp_file_limit`` where the role may set it), over an allowlist of tables; rows are fetched in batches
from a server-side cursor up to the row cap and the result-byte cap.

Both accept only a :class:`~ods.domain.sql_guard.GuardedQuery`, and check it again against their own
tables and dialect before running it: a hand-built ``GuardedQuery`` gains nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ods.adapters.duckdb_process import DuckDBProcess, QueryLimits, QueryOutcome, row_bytes
from ods.domain.sql_guard import GuardedQuery, guard_sql
from ods.domain.text_to_sql import MAX_SAMPLE_ROWS, TableDescription, describe_dataset, describe_table
from ods.errors import NotFoundError, OdsError, SettingsError

if TYPE_CHECKING:
    import pyarrow.dataset
    from sqlalchemy import Connection, Engine

    from ods.adapters.catalog import Catalog
    from ods.adapters.catalog.records import DatasetVersionRecord
    from ods.adapters.object_store import ObjectStore

DEFAULT_MAX_ROWS = 1000
_POSTGRES_QUERY_CANCELED = "57014"
_POSTGRES_OUT_OF_MEMORY = "53200"
_POSTGRES_TEMP_FILE_LIMIT = "53400"  # configuration_limit_exceeded: temp_file_limit among others
_FETCH_ROWS = 256
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "duckdb": "duckdb"}


class WarehouseQueryError(OdsError):
    """The database refused or failed a query that passed the guard (unknown column, type error, ...)."""


class QueryTimeoutError(WarehouseQueryError):
    """A query ran longer than its time limit and was interrupted."""


class QueryLimitError(WarehouseQueryError):
    """A query needed more memory, temporary disk or result bytes than its limits allow, and was stopped."""


@dataclass(frozen=True)
class QueryResult:
    """Rows of one query: at most the guard's row cap; ``truncated`` when the guard's cap cut the result."""

    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    row_count: int
    truncated: bool
    seconds: float


@runtime_checkable
class Warehouse(Protocol):
    """Tables a question may query, and a way to run guarded SQL over them."""

    @property
    def dialect(self) -> str:
        """The sqlglot dialect to guard SQL for (``duckdb``, ``postgres``)."""
        ...

    def tables(self) -> list[TableDescription]:
        """The queryable tables, described for a Text-to-SQL prompt."""
        ...

    def guard(self, sql: str, *, max_rows: int | None = None) -> GuardedQuery:
        """``sql`` checked against these tables and this dialect (raises ``SqlRejected``)."""
        ...

    def run(self, guarded: GuardedQuery, *, timeout_s: float) -> QueryResult:
        """Run a guarded query, interrupting it after ``timeout_s`` (raises :class:`QueryTimeoutError`)."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


def _check_guarded(guarded: object, timeout_s: float) -> GuardedQuery:
    if not isinstance(guarded, GuardedQuery):
        raise TypeError(
            f"a warehouse runs only a GuardedQuery (from guard_sql or Warehouse.guard), "
            f"got {type(guarded).__name__}"
        )
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return guarded


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _timeout_error(timeout_s: float, by: str = "") -> QueryTimeoutError:
    return QueryTimeoutError(
        f"the query ran longer than its limit of {timeout_s:g} s and was stopped{by}; "
        "ask for less (filter, aggregate) or raise ODS_WAREHOUSE__TIMEOUT_S"
    )


def _too_large_error(limits: QueryLimits, rows: str) -> QueryLimitError:
    return QueryLimitError(
        f"the query's result passed its limit of {limits.max_result_bytes:,} bytes "
        f"(ODS_WAREHOUSE__MAX_RESULT_BYTES; {rows}) and was stopped; "
        "select fewer or narrower columns, or aggregate"
    )


# -- DuckDB over registered datasets ------------------------------------------------------------------


@dataclass(frozen=True)
class _RegisteredTable:
    description: TableDescription
    dataset: pyarrow.dataset.Dataset


class DuckDBWarehouse:
    """An in-memory DuckDB over registered dataset versions (one relation each, named like the dataset).

    Construct it with :meth:`from_versions` (or :func:`open_warehouse`). Queries run one at a time in the
    warehouse's query process, which starts with the warehouse (its half-second start-up overlaps the
    caller's prompt building and model call) and is replaced after a query it had to be killed for.
    """

    dialect = "duckdb"

    def __init__(
        self,
        tables: Sequence[tuple[TableDescription, pyarrow.dataset.Dataset]],
        *,
        limits: QueryLimits | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self._tables = [_RegisteredTable(description, dataset) for description, dataset in tables]
        names = [entry.description.name for entry in self._tables]
        if len(set(names)) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise OdsError(
                f"dataset {', '.join(map(repr, repeated))} is named more than once; "
                "query one version of each dataset at a time"
            )
        self.limits = limits or QueryLimits()
        self._max_rows = max_rows
        self._process = DuckDBProcess(
            [(entry.description.name, entry.dataset) for entry in self._tables], self.limits
        )

    @classmethod
    def from_versions(
        cls,
        versions: Sequence[DatasetVersionRecord],
        store: ObjectStore,
        *,
        limits: QueryLimits | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        sample_rows: int = MAX_SAMPLE_ROWS,
    ) -> DuckDBWarehouse:
        """A warehouse over these registered versions, read from ``store`` (local or S3)."""
        import pyarrow.dataset as pads

        from ods.adapters.object_store import key_of

        filesystem = store.filesystem()
        tables = []
        for record in versions:
            if record.status != "registered":
                raise OdsError(
                    f"dataset {record.dataset_name!r} v{record.version} is {record.status}, not registered "
                    f"({record.reason or 'no reason recorded'}); query a registered version"
                )
            dataset = pads.dataset(key_of(store, record.uri), filesystem=filesystem, format="parquet")
            rows = dataset.head(sample_rows).to_pylist() if sample_rows > 0 else []
            description = describe_dataset(
                record.dataset_name,
                version=record.version,
                row_count=record.row_count,
                schema=record.schema,
                profile=record.profile,
                sample_rows=rows,
            )
            tables.append((description, dataset))
        return cls(tables, limits=limits, max_rows=max_rows)

    @property
    def query_process(self) -> DuckDBProcess:
        """The process the queries run in (its pid and the last query's peak memory, for diagnostics)."""
        return self._process

    def tables(self) -> list[TableDescription]:
        return [entry.description for entry in self._tables]

    def guard(self, sql: str, *, max_rows: int | None = None) -> GuardedQuery:
        return guard_sql(
            sql,
            allowed_tables=[entry.description.name for entry in self._tables],
            dialect=self.dialect,
            max_rows=max_rows or self._max_rows,
        )

    def run(self, guarded: GuardedQuery, *, timeout_s: float) -> QueryResult:
        from ods.adapters.duckdb_process import DuckDBProcessError

        checked = self.guard(_check_guarded(guarded, timeout_s).sql, max_rows=guarded.limit)
        try:
            outcome = self._process.query(checked.sql, max_rows=checked.limit, timeout_s=timeout_s)
        except DuckDBProcessError as error:
            raise WarehouseQueryError(str(error)) from None
        if outcome.kind != "rows":
            raise self._error_for(outcome, timeout_s)
        return QueryResult(
            sql=checked.sql,
            columns=outcome.columns,
            rows=outcome.rows,
            row_count=len(outcome.rows),
            truncated=guarded.capped and len(outcome.rows) >= checked.limit,
            seconds=outcome.seconds,
        )

    def _error_for(self, outcome: QueryOutcome, timeout_s: float) -> WarehouseQueryError:
        limits = self.limits
        if outcome.kind == "timeout":
            return _timeout_error(timeout_s)
        if outcome.kind == "too_large":
            return _too_large_error(limits, f"{outcome.detail} before it")
        if outcome.kind == "temp":
            return QueryLimitError(
                f"the query needed more temporary disk than its limit of {limits.max_temp_mb} MB "
                f"(ODS_WAREHOUSE__MAX_TEMP_MB) and was stopped ({outcome.detail}); "
                "ask for less (filter, aggregate) or raise the limit"
            )
        if outcome.kind in ("memory", "died"):
            cause = (
                outcome.detail if outcome.kind == "memory" else f"{outcome.detail}, most likely out of memory"
            )
            return QueryLimitError(
                f"the query needed more memory than its limit of {limits.memory_limit_mb} MB "
                f"(ODS_WAREHOUSE__MEMORY_LIMIT_MB) and was stopped ({cause}); "
                "ask for less (filter, aggregate, fewer or shorter values) or raise the limit"
            )
        return WarehouseQueryError(f"DuckDB could not run the query: {outcome.detail}")

    def close(self) -> None:
        self._process.close()

    def __enter__(self) -> DuckDBWarehouse:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def resolve_dataset_versions(catalog: Catalog, datasets: Sequence[str] | None) -> list[DatasetVersionRecord]:
    """The versions to query: the newest registered one of every dataset, or the refs given (``name@v``)."""
    from ods.domain.refs import parse_dataset_ref

    registered = catalog.latest_registered_versions()
    listing = ", ".join(f"{record.dataset_name}@{record.version}" for record in registered) or "none"
    if datasets is None:
        if not registered:
            raise NotFoundError(
                "the catalog holds no registered dataset to query; register one with `ods datasets prepare`"
            )
        return registered
    if isinstance(datasets, str):
        raise TypeError("datasets must be a sequence of dataset refs, not a single string")
    versions = []
    for ref in datasets:
        name, version = parse_dataset_ref(ref)
        try:
            record = catalog.get_dataset_version(name, version)
        except NotFoundError as error:
            raise NotFoundError(
                f"{ref!r} cannot be queried: {error}; registered datasets: {listing}"
            ) from None
        if record.status != "registered":
            raise OdsError(
                f"{ref!r} cannot be queried: version {record.version} of {name!r} was {record.status} "
                f"({record.reason or 'no reason recorded'}); registered datasets: {listing}"
            )
        versions.append(record)
    return versions


# -- an external SQL database -------------------------------------------------------------------------

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class SqlDatabaseWarehouse:
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
                f"cannot reach the warehouse database: {_first_line(getattr(error, 'orig', error))}; "
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

        checked = self.guard(_check_guarded(guarded, timeout_s).sql, max_rows=guarded.limit)
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
                            raise _timeout_error(timeout_s, " by the database")
                        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {left_ms}")
                    batch = cursor.fetchmany(min(_FETCH_ROWS, checked.limit - len(rows)))
                    if not batch:
                        break
                    for row in batch:
                        size += row_bytes(row)
                        if size > self.limits.max_result_bytes:
                            raise _too_large_error(self.limits, f"{len(rows)} row(s) fitted before it")
                        rows.append(tuple(row))
                cursor.close()
        except DBAPIError as error:
            state = getattr(error.orig, "sqlstate", None)
            if state == _POSTGRES_QUERY_CANCELED:
                raise _timeout_error(timeout_s, " by the database") from None
            if state in (_POSTGRES_OUT_OF_MEMORY, _POSTGRES_TEMP_FILE_LIMIT):
                raise QueryLimitError(
                    f"the warehouse database stopped the query at a limit ({_first_line(error.orig or error)}; "
                    "ODS_WAREHOUSE__MAX_TEMP_MB sets temp_file_limit where the role may); "
                    "ask for less (filter, aggregate)"
                ) from None
            raise WarehouseQueryError(
                f"the warehouse database could not run the query: {_first_line(error.orig or error)}"
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

    def __enter__(self) -> SqlDatabaseWarehouse:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()
