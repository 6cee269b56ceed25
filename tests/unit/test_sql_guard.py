"""Which LLM-written SQL the guard accepts, why it rejects the rest, and how it caps the rows."""

from __future__ import annotations

import pytest

from ods.domain.sql_guard import GuardedQuery, SqlRejected, guard_sql

ALLOWED = {"sales", "regions"}

# (sql, tables the guard reports)
ACCEPTED = [
    pytest.param("SELECT * FROM sales", {"sales"}, id="plain"),
    pytest.param("from sales", {"sales"}, id="duckdb-from-first"),
    pytest.param("SELECT 1", set(), id="no-table"),
    pytest.param("SELECT region, amount FROM SALES WHERE amount > 10", {"sales"}, id="upper-case-table"),
    pytest.param('SELECT * FROM "Sales"', {"sales"}, id="quoted-table"),
    pytest.param(
        "SELECT s.day, r.name FROM sales s JOIN regions r ON s.region = r.id", {"sales", "regions"}, id="join"
    ),
    pytest.param(
        "SELECT * FROM sales s LEFT JOIN regions r USING (region)", {"sales", "regions"}, id="left-join-using"
    ),
    pytest.param(
        "SELECT region, sum(amount), count(*) FROM sales GROUP BY region", {"sales"}, id="aggregate"
    ),
    pytest.param(
        "SELECT region FROM sales GROUP BY region HAVING avg(amount) > 5 ORDER BY 1", {"sales"}, id="having"
    ),
    pytest.param(
        "WITH big AS (SELECT * FROM sales WHERE amount > 100) SELECT count(*) FROM big", {"sales"}, id="cte"
    ),
    pytest.param(
        "WITH a AS (SELECT * FROM sales), b AS (SELECT * FROM a) SELECT * FROM b",
        {"sales"},
        id="chained-ctes",
    ),
    pytest.param(
        "SELECT region, amount, rank() OVER (PARTITION BY region ORDER BY amount DESC) FROM sales",
        {"sales"},
        id="window",
    ),
    pytest.param(
        "SELECT day, sum(amount) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) FROM sales",
        {"sales"},
        id="window-frame",
    ),
    pytest.param("SELECT region FROM sales UNION SELECT name FROM regions", {"sales", "regions"}, id="union"),
    pytest.param(
        "SELECT region FROM sales INTERSECT SELECT name FROM regions", {"sales", "regions"}, id="intersect"
    ),
    pytest.param(
        "SELECT region FROM sales EXCEPT SELECT name FROM regions", {"sales", "regions"}, id="except"
    ),
    pytest.param(
        "SELECT * FROM sales WHERE region IN (SELECT id FROM regions WHERE name LIKE 'N%')",
        {"sales", "regions"},
        id="subquery-in-like",
    ),
    pytest.param(
        "SELECT * FROM (SELECT region, sum(amount) AS total FROM sales GROUP BY region) t WHERE total > 1",
        {"sales"},
        id="derived-table",
    ),
    pytest.param(
        "SELECT * FROM sales s WHERE EXISTS (SELECT 1 FROM regions r WHERE r.id = s.region)",
        {"sales", "regions"},
        id="exists",
    ),
    pytest.param(
        "SELECT CASE WHEN amount > 100 THEN 'big' ELSE 'small' END AS size FROM sales", {"sales"}, id="case"
    ),
    pytest.param(
        "SELECT date_trunc('month', day) AS m, sum(amount) FROM sales GROUP BY 1 ORDER BY 1",
        {"sales"},
        id="date",
    ),
    pytest.param("SELECT * FROM sales WHERE day >= current_date - INTERVAL 30 DAY", {"sales"}, id="interval"),
    pytest.param("SELECT extract(year FROM day), strftime(day, '%Y') FROM sales", {"sales"}, id="date-parts"),
    pytest.param("SELECT * FROM sales ORDER BY amount DESC LIMIT 5", {"sales"}, id="order-limit"),
    pytest.param("SELECT * FROM (VALUES (1, 'a')) AS t(id, name)", set(), id="inline-values"),
    pytest.param("SELECT DISTINCT region FROM sales;", {"sales"}, id="trailing-semicolon"),
    pytest.param("SELECT url_counts FROM sales", {"sales"}, id="column-named-like-url"),
    pytest.param("SELECT list_transform([1, 2], x -> x + 1)", set(), id="lambda"),
    pytest.param("TABLE sales", {"sales"}, id="table-shorthand"),
    pytest.param(
        "SELECT * FROM sales WHERE region IN (FROM regions SELECT id)",
        {"sales", "regions"},
        id="from-first-subquery",
    ),
    pytest.param(
        "SELECT * FROM sales s, LATERAL (SELECT name FROM regions r WHERE r.id = s.region)",
        {"sales", "regions"},
        id="lateral-subquery",
    ),
    pytest.param(
        "WITH sales AS (SELECT * FROM sales WHERE amount > 1) SELECT * FROM sales",
        {"sales"},
        id="cte-shadows-table",
    ),
]

# (sql, a fragment the message must contain)
REJECTED = [
    # more than one statement, including comment tricks
    pytest.param("SELECT 1; DROP TABLE sales", "only one SQL statement", id="stacked-drop"),
    pytest.param("SELECT 1; -- DROP", "only one SQL statement", id="comment-after-semicolon"),
    pytest.param("SELECT 1 /* ; */; DROP TABLE x", "'DROP TABLE x'", id="comment-hidden-semicolon"),
    pytest.param("SELECT * FROM sales;\nSELECT * FROM regions", "2 were given", id="two-selects"),
    # DML / DDL / transaction control
    pytest.param("INSERT INTO sales VALUES (1)", "INSERT", id="insert"),
    pytest.param("UPDATE sales SET amount = 0", "UPDATE", id="update"),
    pytest.param("DELETE FROM sales", "DELETE", id="delete"),
    pytest.param(
        "MERGE INTO sales USING regions ON sales.region = regions.id WHEN MATCHED THEN DELETE",
        "MERGE",
        id="merge",
    ),
    pytest.param("CREATE TABLE x AS SELECT * FROM sales", "CREATE", id="create"),
    pytest.param("dRoP TaBlE sales", "DROP", id="drop-mixed-case"),
    pytest.param("ALTER TABLE sales ADD COLUMN x INT", "ALTER", id="alter"),
    pytest.param("TRUNCATE sales", "TRUNCATE", id="truncate"),
    pytest.param("BEGIN", "BEGIN", id="begin"),
    pytest.param("COMMIT", "COMMIT", id="commit"),
    pytest.param("GRANT SELECT ON sales TO bob", "GRANT", id="grant"),
    pytest.param("SET memory_limit = '1GB'", "SET", id="set"),
    pytest.param("VALUES (1)", "VALUES", id="bare-values"),
    pytest.param(
        "WITH d AS (DELETE FROM sales RETURNING *) SELECT * FROM d", "data-modifying CTE", id="delete-cte"
    ),
    pytest.param(
        "WITH u AS (UPDATE sales SET amount = 0 RETURNING *) SELECT * FROM u", "UPDATE", id="update-cte"
    ),
    pytest.param("SELECT * INTO copy_of_sales FROM sales", "SELECT ... INTO", id="select-into"),
    pytest.param("SELECT * FROM sales FOR UPDATE", "FOR UPDATE", id="for-update"),
    pytest.param("SELECT * FROM sales FOR SHARE", "FOR UPDATE/FOR SHARE", id="for-share"),
    # DuckDB statements that touch files, extensions or other databases
    pytest.param("COPY sales TO '/tmp/out.csv'", "COPY", id="copy"),
    pytest.param("ATTACH 'other.db' AS other", "ATTACH", id="attach"),
    pytest.param("DETACH other", "DETACH", id="detach"),
    pytest.param("PRAGMA database_list", "PRAGMA", id="pragma"),
    pytest.param("INSTALL httpfs", "INSTALL", id="install"),
    pytest.param("LOAD httpfs", "LOAD", id="load"),
    pytest.param("EXPORT DATABASE '/tmp/dump'", "does not parse", id="export-database"),
    pytest.param("IMPORT DATABASE '/tmp/dump'", "does not parse", id="import-database"),
    pytest.param("CALL pragma_version()", "CALL", id="call"),
    pytest.param("USE other", "USE", id="use"),
    # table functions, file readers, files as tables
    pytest.param("SELECT * FROM read_csv('/etc/passwd')", "read_csv()", id="read-csv"),
    pytest.param("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto()", id="read-csv-auto"),
    pytest.param("SELECT * FROM read_parquet('s3://b/x.parquet')", "read_parquet()", id="read-parquet"),
    pytest.param("SELECT * FROM read_json_auto('x.json')", "read_json_auto()", id="read-json"),
    pytest.param("SELECT * FROM glob('/home/*')", "glob()", id="glob"),
    pytest.param("SELECT * FROM parquet_scan('x.parquet')", "parquet_scan()", id="parquet-scan"),
    pytest.param("SELECT * FROM sqlite_scan('x.db', 't')", "sqlite_scan()", id="sqlite-scan"),
    pytest.param(
        "SELECT * FROM postgres_scan('dbname=x', 'public', 't')", "postgres_scan()", id="postgres-scan"
    ),
    pytest.param("SELECT * FROM query('DROP TABLE sales')", "query()", id="query-table-function"),
    pytest.param("SELECT * FROM generate_series(1, 10)", "table function", id="generate-series"),
    pytest.param("SELECT * FROM sales, LATERAL read_csv('x.csv')", "read_csv()", id="lateral-reader"),
    pytest.param("SELECT (SELECT count(*) FROM read_parquet('x'))", "read_parquet()", id="nested-reader"),
    pytest.param("SELECT * FROM 'data.parquet'", "'data.parquet'", id="file-as-table"),
    pytest.param("SELECT * FROM 's3://bucket/sales.csv'", "'s3://bucket/sales.csv'", id="url-as-table"),
    pytest.param("SELECT * FROM '/etc/passwd'", "'/etc/passwd'", id="path-as-table"),
    # sleep / file / system / settings functions
    pytest.param("SELECT pg_sleep(10)", "pg_sleep()", id="pg-sleep"),
    pytest.param('SELECT "PG_SLEEP"(10)', "pg_sleep()", id="pg-sleep-quoted"),
    pytest.param("SELECT pg_catalog.pg_sleep(10)", "pg_sleep()", id="pg-sleep-qualified"),
    pytest.param("SELECT pg_read_file('/etc/passwd')", "pg_read_file()", id="pg-read-file"),
    pytest.param("SELECT pg_read_binary_file('/etc/passwd')", "pg_read_binary_file()", id="pg-read-binary"),
    pytest.param("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir()", id="pg-ls-dir"),
    pytest.param("SELECT lo_import('/etc/passwd')", "lo_import()", id="lo-import"),
    pytest.param("SELECT dblink('host=evil', 'SELECT 1')", "dblink()", id="dblink"),
    pytest.param("SELECT current_setting('data_directory')", "current_setting()", id="current-setting"),
    pytest.param("SELECT set_config('x', 'y', false)", "set_config()", id="set-config"),
    pytest.param("SELECT getenv('HOME')", "getenv()", id="getenv"),
    pytest.param("SELECT system('id')", "system()", id="system"),
    pytest.param("SELECT nextval('seq')", "nextval()", id="nextval"),
    pytest.param(
        "SELECT amount FROM sales WHERE http_get_text('http://x') IS NULL",
        "http_get_text()",
        id="unknown-http",
    ),
    pytest.param("SELECT my_file_reader('x')", "my_file_reader()", id="unknown-file-like"),
    # tables outside the allowlist and system catalogs
    pytest.param("SELECT * FROM customers", "'customers'", id="not-allowlisted"),
    pytest.param("SELECT * FROM sales JOIN secrets ON true", "'secrets'", id="joined-not-allowlisted"),
    pytest.param("SELECT * FROM main.sales", "'main.sales'", id="qualified-not-allowlisted"),
    pytest.param(
        "SELECT * FROM information_schema.tables", "'information_schema.tables'", id="information-schema"
    ),
    pytest.param(
        'SELECT * FROM "INFORMATION_SCHEMA"."TABLES"', "system catalog", id="information-schema-quoted"
    ),
    pytest.param("SELECT * FROM pg_catalog.pg_tables", "'pg_catalog.pg_tables'", id="pg-catalog"),
    pytest.param("SELECT * FROM pg_shadow", "'pg_shadow'", id="pg-table"),
    pytest.param("SELECT * FROM sqlite_master", "'sqlite_master'", id="sqlite-master"),
    pytest.param("SELECT * FROM duckdb_tables()", "duckdb_tables()", id="duckdb-function"),
    pytest.param("SELECT * FROM ＤＵＣＫＤＢ_settings()", "duckdb_settings()", id="fullwidth-duckdb"),
    pytest.param('SELECT * FROM "ｐｇ_catalog".pg_user', "system catalog", id="fullwidth-pg-catalog"),
    pytest.param(
        "SELECT * FROM (WITH secret AS (SELECT 1) SELECT * FROM secret) s, secret",
        "'secret'",
        id="cte-out-of-scope",
    ),
    pytest.param(
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "'b'", id="cte-forward-reference"
    ),
    # recursion, emptiness, garbage
    pytest.param(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
        "WITH RECURSIVE",
        id="recursive",
    ),
    pytest.param("", "empty", id="empty"),
    pytest.param("  -- just a comment", "no statement", id="comment-only"),
    pytest.param("SELEC * FRM sales", "not a SELECT", id="garbage"),
    pytest.param("SHOW TABLES", "not a SELECT", id="show"),
    pytest.param("DESCRIBE sales", "DESCRIBE", id="describe"),
    pytest.param("SELECT * FROM (DESCRIBE sales)", "DESCRIBE", id="describe-in-subquery"),
    pytest.param("SELECT * FROM (SUMMARIZE sales)", "SUMMARIZE", id="summarize-in-subquery"),
    pytest.param("EXPLAIN ANALYZE DELETE FROM sales", "EXPLAIN", id="explain-analyze"),
    pytest.param("SELECT * FROM ｓａｌｅｓ", "'ｓａｌｅｓ'", id="fullwidth-lookalike-table"),
    pytest.param(
        "WITH sales AS (SELECT * FROM secret) SELECT * FROM sales", "'secret'", id="cte-hides-table"
    ),
    pytest.param("SELECT * FROM sales WHERE (", "does not parse", id="unbalanced"),
]


@pytest.mark.parametrize(("sql", "tables"), ACCEPTED)
def test_accepts_read_only_queries(sql: str, tables: set[str]) -> None:
    guarded = guard_sql(sql, allowed_tables=ALLOWED)

    assert isinstance(guarded, GuardedQuery)
    assert guarded.tables == frozenset(tables)
    assert guarded.limit <= 1000
    assert "LIMIT" in guarded.sql.upper()


@pytest.mark.parametrize(("sql", "fragment"), REJECTED)
def test_rejects_with_a_message_naming_the_construct(sql: str, fragment: str) -> None:
    with pytest.raises(SqlRejected) as caught:
        guard_sql(sql, allowed_tables=ALLOWED)

    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(("sql", "tables"), ACCEPTED)
def test_guarding_is_idempotent(sql: str, tables: set[str]) -> None:
    once = guard_sql(sql, allowed_tables=ALLOWED)
    twice = guard_sql(once.sql, allowed_tables=ALLOWED, max_rows=once.limit)

    assert (twice.sql, twice.tables, twice.limit) == (once.sql, once.tables, once.limit)
    assert not twice.capped, "the second pass finds the cap already in place"


def test_allowed_tables_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError, match="allowed_tables"):
        guard_sql("SELECT * FROM s", allowed_tables="sales")


def test_there_are_enough_cases() -> None:
    assert len(ACCEPTED) + len(REJECTED) >= 40


def test_allowlist_is_case_insensitive_and_qualified_names_match_exactly() -> None:
    assert guard_sql("SELECT * FROM Sales", allowed_tables={"SALES"}).tables == {"sales"}
    assert guard_sql("SELECT * FROM public.sales", allowed_tables={"public.sales"}).tables == {"public.sales"}
    with pytest.raises(SqlRejected, match="'sales'"):
        guard_sql("SELECT * FROM sales", allowed_tables={"public.sales"})


def test_rejection_lists_the_datasets_that_may_be_used() -> None:
    with pytest.raises(SqlRejected, match=r"\(regions, sales\)"):
        guard_sql("SELECT * FROM orders", allowed_tables=ALLOWED)


def test_rendered_sql_drops_comments() -> None:
    guarded = guard_sql("SELECT amount /* ; DROP TABLE sales */ FROM sales -- bye", allowed_tables=ALLOWED)

    assert "DROP" not in guarded.sql
    assert "--" not in guarded.sql
    assert "/*" not in guarded.sql


def test_postgres_dialect_checks_and_renders() -> None:
    guarded = guard_sql(
        "SELECT region, count(*) FROM sales GROUP BY region", allowed_tables=ALLOWED, dialect="postgres"
    )
    assert guarded.sql == "SELECT region, COUNT(*) FROM sales GROUP BY region LIMIT 1000"
    with pytest.raises(SqlRejected, match="pg_sleep"):
        guard_sql("SELECT pg_sleep(5)", allowed_tables=ALLOWED, dialect="postgres")
    with pytest.raises(SqlRejected, match="pg_read_file"):
        guard_sql("SELECT pg_read_file('/etc/passwd', 0, 100)", allowed_tables=ALLOWED, dialect="postgres")


def test_unknown_dialect_is_rejected() -> None:
    with pytest.raises(SqlRejected, match="no_such_dialect"):
        guard_sql("SELECT 1", allowed_tables=ALLOWED, dialect="no_such_dialect")


# Row cap: (sql, max_rows, expected SQL, expected limit)
ROW_CAPS = [
    pytest.param("SELECT * FROM sales", 100, "SELECT * FROM sales LIMIT 100", 100, id="added"),
    pytest.param("SELECT * FROM sales LIMIT 5000", 100, "SELECT * FROM sales LIMIT 100", 100, id="lowered"),
    pytest.param("SELECT * FROM sales LIMIT 7", 100, "SELECT * FROM sales LIMIT 7", 7, id="smaller-kept"),
    pytest.param("SELECT * FROM sales LIMIT 100", 100, "SELECT * FROM sales LIMIT 100", 100, id="equal-kept"),
    pytest.param("SELECT * FROM sales LIMIT 0", 100, "SELECT * FROM sales LIMIT 0", 0, id="zero-kept"),
    pytest.param(
        "SELECT * FROM sales LIMIT 500 OFFSET 20",
        50,
        "SELECT * FROM sales LIMIT 50 OFFSET 20",
        50,
        id="offset-kept",
    ),
    pytest.param(
        "SELECT * FROM sales ORDER BY amount DESC",
        10,
        "SELECT * FROM sales ORDER BY amount DESC LIMIT 10",
        10,
        id="order-by-kept",
    ),
    pytest.param(
        "SELECT region FROM sales UNION ALL SELECT name FROM regions",
        10,
        "SELECT region FROM sales UNION ALL SELECT name FROM regions LIMIT 10",
        10,
        id="union-capped",
    ),
    pytest.param(
        "WITH t AS (SELECT * FROM sales) SELECT * FROM t LIMIT 99999",
        10,
        "WITH t AS (SELECT * FROM sales) SELECT * FROM t LIMIT 10",
        10,
        id="cte-lowered",
    ),
    pytest.param(
        "SELECT * FROM sales LIMIT 1 + 1",
        10,
        "SELECT * FROM (SELECT * FROM sales LIMIT 1 + 1) AS guarded LIMIT 10",
        10,
        id="expression-wrapped",
    ),
    pytest.param(
        "SELECT * FROM sales LIMIT 50%",
        10,
        "SELECT * FROM (SELECT * FROM sales LIMIT 50 PERCENT) AS guarded LIMIT 10",
        10,
        id="percent-wrapped",
    ),
    pytest.param(
        "SELECT * FROM sales LIMIT ALL",
        10,
        "SELECT * FROM (SELECT * FROM sales LIMIT ALL) AS guarded LIMIT 10",
        10,
        id="limit-all-wrapped",
    ),
    pytest.param(
        "(SELECT * FROM sales)",
        10,
        "SELECT * FROM ((SELECT * FROM sales)) AS guarded LIMIT 10",
        10,
        id="parenthesised",
    ),
]


@pytest.mark.parametrize(("sql", "max_rows", "expected", "limit"), ROW_CAPS)
def test_row_cap_rewrite(sql: str, max_rows: int, expected: str, limit: int) -> None:
    guarded = guard_sql(sql, allowed_tables=ALLOWED, max_rows=max_rows)

    assert guarded.sql == expected
    # The guard imposed the cap exactly when it changed the query's own limit.
    assert guarded.capped == (expected != sql)
    assert guarded.limit == limit


def test_inner_limits_are_left_alone() -> None:
    guarded = guard_sql(
        "SELECT * FROM (SELECT * FROM sales LIMIT 5000) t", allowed_tables=ALLOWED, max_rows=10
    )

    assert guarded.sql == "SELECT * FROM (SELECT * FROM sales LIMIT 5000) AS t LIMIT 10"


@pytest.mark.parametrize("max_rows", [0, -1, True])
def test_max_rows_must_be_positive(max_rows: int) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        guard_sql("SELECT 1", allowed_tables=ALLOWED, max_rows=max_rows)


def test_overlong_and_deeply_nested_sql_is_rejected() -> None:
    with pytest.raises(SqlRejected, match="characters long"):
        guard_sql("SELECT " + "1 + " * 10_000 + "1", allowed_tables=ALLOWED)
    with pytest.raises(SqlRejected):
        guard_sql("SELECT " + "(" * 3000 + "1" + ")" * 3000, allowed_tables=ALLOWED)
