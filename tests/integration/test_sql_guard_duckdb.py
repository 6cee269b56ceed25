"""The SQL guard in front of a real in-memory DuckDB: rejected SQL never runs, accepted SQL runs capped.

Each test gets a fresh database holding ``sales`` (2,500 rows) and ``regions``. The statements are the
unit tests' tables, so every case the guard is specified against is also executed (or refused) for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from ods.domain.sql_guard import SqlRejected, allowed_functions, guard_sql
from tests.unit.test_sql_guard import ACCEPTED, ALLOWED, ANALYST_QUERIES, REJECTED, ROW_CAPS

SALES_ROWS = 2500

# DuckDB-specific attempts beyond the unit tables: each would change or leak something if it ran.
DUCKDB_ATTACKS = [
    "DROP TABLE sales",
    "SELECT 1; DROP TABLE sales",
    "SELECT 1 /* ; */; DELETE FROM sales",
    "WITH d AS (DELETE FROM sales RETURNING *) SELECT count(*) FROM d",
    "CREATE OR REPLACE TABLE sales AS SELECT 1 AS id",
    "UPDATE sales SET amount = 0",
    "INSERT INTO sales SELECT * FROM sales",
    "ALTER TABLE sales RENAME TO gone",
    "CREATE VIEW v AS SELECT * FROM sales",
    "CREATE MACRO evil() AS 1",
    "ATTACH ':memory:' AS other",
    "SET threads = 1",
    "SELECT * FROM query('DROP TABLE sales')",
    "SELECT * FROM query_table('sales')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM (DESCRIBE sales)",
    "SELECT * FROM (SUMMARIZE sales)",
    "CHECKPOINT",
    "VACUUM",
]


def _statements(params: list[Any]) -> list[Any]:
    return [pytest.param(param.values[0], id=param.id) for param in params]


def run_guarded(connection: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int = 1000) -> list[Any]:
    """What the Text-to-SQL path does: guard first, execute only the guarded SQL."""
    guarded = guard_sql(sql, allowed_tables=ALLOWED, dialect="duckdb", max_rows=max_rows)
    return connection.execute(guarded.sql).fetchall()


def snapshot(connection: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """Everything a rejected statement could have touched: rows, tables and views, databases, settings."""
    return (
        connection.execute("SELECT * FROM sales ORDER BY id").fetchall(),
        connection.execute("SELECT * FROM regions ORDER BY id").fetchall(),
        connection.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall(),
        connection.execute("SELECT database_name FROM duckdb_databases() ORDER BY 1").fetchall(),
        connection.execute("SELECT function_name FROM duckdb_functions() WHERE NOT internal").fetchall(),
        connection.execute("SELECT current_setting('threads')").fetchall(),
    )


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(":memory:") as connection:
        connection.execute(
            """
            CREATE TABLE sales AS
            SELECT i AS id,
                   DATE '2024-01-01' + CAST(i % 365 AS INTEGER) AS day,
                   ['N', 'S', 'E', 'W'][i % 4 + 1] AS region,
                   CAST(i % 250 AS DOUBLE) AS amount,
                   CAST(i % 7 AS INTEGER) AS url_counts
            FROM range(?) AS t(i)
            """,
            [SALES_ROWS],
        )
        connection.execute(
            "CREATE TABLE regions AS SELECT * FROM (VALUES ('N', 'N', 'North'), ('S', 'S', 'South'), "
            "('E', 'E', 'East'), ('W', 'W', 'West')) AS t(id, region, name)"
        )
        yield connection


def test_snapshot_sees_what_an_unguarded_statement_would_do(connection: duckdb.DuckDBPyConnection) -> None:
    before = snapshot(connection)
    connection.execute("DELETE FROM sales WHERE id < 10")

    assert snapshot(connection) != before


@pytest.mark.parametrize("sql", [*_statements(REJECTED), *DUCKDB_ATTACKS])
def test_rejected_sql_never_reaches_the_database(connection: duckdb.DuckDBPyConnection, sql: str) -> None:
    before = snapshot(connection)

    with pytest.raises(SqlRejected):
        run_guarded(connection, sql)

    assert snapshot(connection) == before
    assert connection.execute("SELECT count(*) FROM sales").fetchone() == (SALES_ROWS,)


@pytest.mark.parametrize("sql", _statements(ACCEPTED))
def test_accepted_sql_runs_within_the_cap(connection: duckdb.DuckDBPyConnection, sql: str) -> None:
    before = snapshot(connection)

    rows = run_guarded(connection, sql, max_rows=50)

    assert len(rows) <= 50
    assert snapshot(connection) == before


@pytest.mark.parametrize("sql", ANALYST_QUERIES["duckdb"])
def test_analysts_functions_run(connection: duckdb.DuckDBPyConnection, sql: str) -> None:
    assert len(run_guarded(connection, sql, max_rows=50)) <= 50


def test_allowlisted_functions_exist_in_duckdb(connection: duckdb.DuckDBPyConnection) -> None:
    functions = {
        row[0] for row in connection.execute("SELECT function_name FROM duckdb_functions()").fetchall()
    }
    # Names DuckDB parses as syntax rather than listing as functions.
    syntax = {
        "coalesce", "columns", "current_time", "current_timestamp", "grouping", "ifnull", "localtime",
        "localtimestamp", "percentile_cont", "percentile_disc",
    }  # fmt: skip

    assert allowed_functions("duckdb") - functions <= syntax


@pytest.mark.parametrize(
    ("sql", "max_rows"), [pytest.param(p.values[0], p.values[1], id=p.id) for p in ROW_CAPS]
)
def test_row_cap_rewrites_run_and_hold(
    connection: duckdb.DuckDBPyConnection, sql: str, max_rows: int
) -> None:
    guarded = guard_sql(sql, allowed_tables=ALLOWED, max_rows=max_rows)

    rows = connection.execute(guarded.sql).fetchall()

    assert len(rows) <= guarded.limit <= max_rows


def test_cap_cuts_a_large_result_and_keeps_its_order(connection: duckdb.DuckDBPyConnection) -> None:
    rows = run_guarded(connection, "SELECT id FROM sales ORDER BY id DESC", max_rows=1000)

    assert len(rows) == 1000
    assert rows[0] == (SALES_ROWS - 1,)
    assert rows == sorted(rows, reverse=True)


def test_smaller_limit_of_the_query_is_kept(connection: duckdb.DuckDBPyConnection) -> None:
    assert len(run_guarded(connection, "SELECT * FROM sales LIMIT 3", max_rows=1000)) == 3


def test_reads_of_a_real_file_are_refused(connection: duckdb.DuckDBPyConnection, tmp_path: Any) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n", encoding="utf-8")
    # Hostile SQL is built on purpose here: the first line shows the read works when nothing guards it.
    assert connection.execute(f"SELECT * FROM read_csv('{secret}')").fetchall() == [("hunter2",)]  # noqa: S608

    for sql in (
        f"SELECT * FROM read_csv('{secret}')",  # noqa: S608
        f"SELECT * FROM '{secret}'",  # noqa: S608
        f'SELECT * FROM "{secret}"',  # noqa: S608
    ):
        with pytest.raises(SqlRejected, match="not allowed"):
            run_guarded(connection, sql)
