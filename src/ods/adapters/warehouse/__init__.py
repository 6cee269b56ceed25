"""Warehouses: where Text-to-SQL queries run, behind one narrow protocol.

``DuckDBWarehouse`` is an in-memory DuckDB holding one relation per registered dataset version, scanned
from its Parquet through a pyarrow dataset (local directory or S3, whatever the object store is), so DuckDB
itself never needs to open a file or the network. It runs in a query process of its own
(``ods.adapters.warehouse.query_process``) under the limits of ``ODS_WAREHOUSE__*``: memory (DuckDB's
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

from ods.adapters.warehouse.base import (
    DEFAULT_MAX_ROWS,
    QueryLimitError,
    QueryResult,
    QueryTimeoutError,
    Warehouse,
    WarehouseQueryError,
)
from ods.adapters.warehouse.duckdb import DuckDBWarehouse, describe_version, resolve_dataset_versions
from ods.adapters.warehouse.sql_database import SqlDatabaseWarehouse

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DuckDBWarehouse",
    "QueryLimitError",
    "QueryResult",
    "QueryTimeoutError",
    "SqlDatabaseWarehouse",
    "Warehouse",
    "WarehouseQueryError",
    "describe_version",
    "resolve_dataset_versions",
]
