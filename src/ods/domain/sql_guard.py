"""The guard every LLM-written SQL statement passes before it runs.

Text-to-SQL answers are untrusted input. :func:`guard_sql` parses them with sqlglot (the AST, never regexes
on the text), accepts exactly one read-only query over an allowlist of tables, and renders it back with a
row cap. Anything else raises :class:`SqlRejected` with a one-line reason; nothing is ever executed here.

Policy decisions (kept deliberately strict, since a false rejection costs a retry and a false acceptance
costs data):

* Only queries: SELECT, UNION/INTERSECT/EXCEPT, CTEs, subqueries, joins, aggregates, window functions.
* ``WITH RECURSIVE`` is rejected: DuckDB materialises a recursive CTE before an outer LIMIT applies, so
  the row cap does not stop an unbounded recursion.
* Tables in FROM must be named in ``allowed_tables`` (or be a CTE visible at that point); table functions
  (``read_csv``, ``generate_series``, ``query``...) and file/URL names used as tables are rejected.
* Functions on the denylist, and unknown functions whose name looks like file, network, process,
  configuration or sleep access, are rejected. Known sqlglot functions are otherwise allowed.
* Comments are dropped from the rendered SQL, so nothing hidden in them reaches the database, and the
  rendered SQL is parsed and checked again: what runs is what was checked.
* The row cap sets or lowers the query's own top-level LIMIT (its ORDER BY keeps its meaning); a LIMIT
  that is not a plain integer (expression, percentage, FETCH, ALL) is wrapped as
  ``SELECT * FROM (<query>) AS guarded LIMIT max_rows``.

Written against sqlglot 30's AST (``exp.Expr``, the ``with_`` argument key).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from ods.errors import OdsError

MAX_SQL_CHARS = 20_000
_HINT = "ask for a single read-only SELECT over the registered datasets"


class SqlRejected(OdsError):
    """A SQL statement did not pass the guard; the message says which construct and why."""


@dataclass(frozen=True)
class GuardedQuery:
    """A query that passed the guard: the SQL to run, the tables it reads, the row cap it carries."""

    sql: str
    tables: frozenset[str]
    limit: int
    # True when the guard imposed ``limit`` (the query asked for more rows or set no limit): only then
    # does a full result mean rows were cut off.
    capped: bool = False


# Statement kinds named in messages; any other non-query statement is reported by its class name.
_STATEMENT_NAMES: dict[type[exp.Expr], str] = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
    exp.Create: "CREATE",
    exp.Drop: "DROP",
    exp.Alter: "ALTER",
    exp.TruncateTable: "TRUNCATE",
    exp.Copy: "COPY",
    exp.Attach: "ATTACH",
    exp.Detach: "DETACH",
    exp.Pragma: "PRAGMA",
    exp.Install: "INSTALL",
    exp.Set: "SET",
    exp.Transaction: "BEGIN/START TRANSACTION",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
    exp.Grant: "GRANT",
    exp.Use: "USE",
    exp.Describe: "DESCRIBE",
    exp.Summarize: "SUMMARIZE",
    exp.Values: "VALUES",
    exp.Pivot: "PIVOT",
}
# Statements that are never allowed anywhere in the tree (VALUES and PIVOT are fine inside a query).
_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    *(kind for kind in _STATEMENT_NAMES if kind not in (exp.Values, exp.Pivot)),
    exp.Command,
)

# Functions that read files, reach other databases or the network, run commands, read or change server
# settings, sleep, or write sequences and large objects. Compared after NFKC folding and lower-casing.
DENIED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # DuckDB file readers and scanners
        "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
        "read_json_objects", "read_json_objects_auto", "read_ndjson", "read_ndjson_auto",
        "read_ndjson_objects", "read_blob", "read_text", "read_xlsx", "glob", "sniff_csv",
        "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata",
        "sqlite_scan", "sqlite_attach", "postgres_scan", "postgres_scan_pushdown", "postgres_query",
        "postgres_execute", "postgres_attach", "mysql_scan", "mysql_query", "mysql_execute",
        "iceberg_scan", "iceberg_metadata", "iceberg_snapshots", "delta_scan", "st_read",
        # DuckDB functions that run SQL given as a string, or expose settings and the environment
        "query", "query_table", "json_execute_serialized_sql", "from_substrait", "getenv", "getvariable",
        "current_setting", "set_config", "system", "shell", "load_extension", "http_get", "http_post",
        # PostgreSQL sleep, file, process and large-object functions
        "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file", "pg_ls_dir",
        "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir",
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_advisory_lock", "pg_advisory_xact_lock", "pg_notify", "lo_import", "lo_export", "lo_get",
        "lo_put", "lo_open", "lo_create", "lo_unlink", "lo_from_bytea", "dblink", "dblink_exec",
        "dblink_connect", "dblink_send_query", "nextval", "setval", "txid_current", "sleep", "sleep_ms",
    }
)  # fmt: skip

# Unknown functions (not parsed to a typed sqlglot expression) whose names look like one of the above.
_SUSPICIOUS_PREFIXES = (
    *("read_", "pg_", "lo_", "dblink", "duckdb_", "sqlite_", "postgres_", "mysql_"),
    *("pragma_", "http", "iceberg_", "delta_", "parquet_", "ducklake_"),
)
_SUSPICIOUS_SUFFIXES = ("_scan", "_query", "_execute", "_exec", "_attach")
_SUSPICIOUS_PARTS = (
    *("file", "glob", "sleep", "shell", "system", "getenv", "environ", "setting", "config"),
    *("extension", "secret", "s3", "url", "exec"),
)

# Schemas and table-name prefixes of system catalogs in DuckDB, PostgreSQL and SQLite.
_SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "pg_toast", "system", "temp"})
_SYSTEM_TABLE_PREFIXES = ("pg_", "duckdb_", "sqlite_", "information_schema")


def guard_sql(
    sql: str, *, allowed_tables: Collection[str], dialect: str = "duckdb", max_rows: int = 1000
) -> GuardedQuery:
    """Return ``sql`` as a capped, read-only query over ``allowed_tables``, or raise :class:`SqlRejected`.

    ``allowed_tables`` are compared case-insensitively; a schema-qualified reference must match an
    allowed entry spelled with the same qualification (``public.sales``).
    """
    if isinstance(allowed_tables, str):
        raise TypeError("allowed_tables must be a collection of table names, not a single string")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    if not sql.strip():
        raise SqlRejected(f"the SQL statement is empty; {_HINT}")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRejected(f"the SQL statement is {len(sql)} characters long, over {MAX_SQL_CHARS}; {_HINT}")
    query = _parse_single_query(sql, dialect)
    allowed = {name.lower() for name in allowed_tables}
    try:
        _reject_forbidden_nodes(query)
        tables = _check_tables(query, allowed)
        capped, limit, imposed = _cap_rows(query, max_rows)
        rendered = capped.sql(dialect=dialect, comments=False, unsupported_level=ErrorLevel.RAISE)
        # What runs is the rendered text, so it must pass the same checks as the text that came in.
        reparsed = _parse_single_query(rendered, dialect)
        _reject_forbidden_nodes(reparsed)
        if _check_tables(reparsed, allowed) != tables:
            raise SqlRejected(f"the rewritten query reads different tables than the one given; {_HINT}")
    except RecursionError:
        raise SqlRejected(f"the SQL statement is nested too deeply to check; {_HINT}") from None
    except SqlglotError as error:
        raise SqlRejected(
            f"the query cannot be written in the {dialect} dialect ({_summarise(error)}); {_HINT}"
        ) from None
    return GuardedQuery(sql=rendered, tables=frozenset(tables), limit=limit, capped=imposed)


def _fold(name: str) -> str:
    """Compare identifiers the way a person reads them: compatibility-folded and case-insensitive."""
    return unicodedata.normalize("NFKC", name).casefold()


def _summarise(error: SqlglotError) -> str:
    """The first line of a sqlglot error, without its terminal colour codes."""
    text = str(error).replace("\x1b[4m", "").replace("\x1b[0m", "")
    return text.splitlines()[0].strip() if text.strip() else type(error).__name__


def _snippet(node: exp.Expr) -> str:
    text = node.sql(comments=False) or type(node).__name__.upper()
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_single_query(sql: str, dialect: str) -> exp.Query:
    try:
        statements = [
            statement
            for statement in sqlglot.parse(sql, dialect=dialect, error_level=ErrorLevel.IMMEDIATE)
            if statement is not None
        ]
    except RecursionError:
        raise SqlRejected(f"the SQL statement is nested too deeply to check; {_HINT}") from None
    except SqlglotError as error:
        raise SqlRejected(f"the SQL does not parse as {dialect}: {_summarise(error)}") from None
    except ValueError as error:  # unknown dialect name
        raise SqlRejected(f"cannot check SQL for dialect {dialect!r}: {error}") from None
    if not statements:
        raise SqlRejected(f"the SQL contains no statement; {_HINT}")
    if len(statements) > 1:
        extra = statements[1]
        shown = "a comment" if isinstance(extra, exp.Semicolon) else repr(_snippet(extra))
        raise SqlRejected(
            f"only one SQL statement may run, but {len(statements)} were given "
            f"(after the first ';' comes {shown}); {_HINT}"
        )
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        if isinstance(statement, (*_FORBIDDEN_NODES, exp.Values, exp.Pivot)):
            raise SqlRejected(f"{_statement_name(statement)} statements are not allowed; {_HINT}")
        raise SqlRejected(f"the statement {_snippet(statement)!r} is not a SELECT query; {_HINT}")
    return statement


def _statement_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    for kind, name in _STATEMENT_NAMES.items():
        if isinstance(node, kind):
            return name
    return type(node).__name__.upper()


def _reject_forbidden_nodes(query: exp.Query) -> None:
    """Walk the whole tree: modifying statements hide in CTEs and subqueries, functions anywhere."""
    for node in query.walk():
        if isinstance(node, exp.Into):
            raise SqlRejected(f"SELECT ... INTO writes a table and is not allowed; {_HINT}")
        if isinstance(node, exp.Lock):
            raise SqlRejected(f"locking reads (FOR UPDATE/FOR SHARE) are not allowed; {_HINT}")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise SqlRejected(
                "recursive CTEs (WITH RECURSIVE) are not allowed: the row cap cannot bound them; "
                "rewrite without recursion"
            )
        if isinstance(node, exp.CTE) and not isinstance(node.this, exp.Query):
            raise SqlRejected(
                f"the CTE {node.alias!r} holds a {_statement_name(node.this)} statement; "
                f"data-modifying CTEs are not allowed; {_HINT}"
            )
        if isinstance(node, exp.Func):
            _check_function(node)
        elif isinstance(node, _FORBIDDEN_NODES):
            raise SqlRejected(f"{_statement_name(node)} is not allowed inside a query; {_HINT}")


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name
    return node.sql_name()


def _check_function(node: exp.Func) -> None:
    name = _fold(_function_name(node))
    if name in DENIED_FUNCTIONS:
        raise SqlRejected(
            f"the function {name}() is not allowed: it can read files, reach other systems, "
            f"change settings or stall the database; {_HINT}"
        )
    if isinstance(node, exp.Anonymous) and (
        name.startswith(_SUSPICIOUS_PREFIXES)
        or name.endswith(_SUSPICIOUS_SUFFIXES)
        or any(part in name for part in _SUSPICIOUS_PARTS)
    ):
        raise SqlRejected(
            f"the function {name}() is not allowed: its name looks like file, network or system "
            f"access; {_HINT}"
        )


def _visible_ctes(table: exp.Table) -> set[str]:
    """CTE names a table reference can mean: every CTE of an enclosing WITH that precedes it."""
    names: set[str] = set()
    ancestors: list[exp.Expr] = []
    node: exp.Expr | None = table
    while node is not None:
        with_ = node.args.get("with_") if isinstance(node, exp.Query) else None
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                if any(cte is ancestor for ancestor in ancestors):
                    break  # a CTE sees only the ones before it (WITH RECURSIVE is rejected)
                names.add(cte.alias_or_name.lower())
        ancestors.append(node)
        node = node.parent
    return names


def _check_tables(query: exp.Query, allowed: set[str]) -> set[str]:
    tables: set[str] = set()
    for table in query.find_all(exp.Table):
        source = table.this
        if isinstance(source, exp.Func):
            raise SqlRejected(
                f"the table function {_snippet(source)} is not allowed; query a registered dataset by name"
            )
        if not isinstance(source, exp.Identifier):
            raise SqlRejected(f"the table reference {_snippet(table)} is not a plain table name; {_HINT}")
        # Folded names catch look-alikes of system names; the allowlist is matched on the exact
        # lower-cased spelling, so a look-alike never passes as an allowed table.
        folded = [_fold(part.name) for part in table.parts]
        if any(part in _SYSTEM_SCHEMAS for part in folded[:-1]) or folded[-1].startswith(
            _SYSTEM_TABLE_PREFIXES
        ):
            raise SqlRejected(f"the system catalog {'.'.join(folded)!r} is not allowed; {_HINT}")
        parts = [part.name.lower() for part in table.parts]
        name = parts[-1]
        qualified = ".".join(parts)
        if len(parts) == 1 and name in _visible_ctes(table):
            continue
        if any(mark in name for mark in ("/", "\\", ":", "*")) or (
            source.quoted and "." in name and len(parts) == 1
        ):
            raise SqlRejected(
                f"reading the file or URL {source.name!r} directly is not allowed; "
                "query a registered dataset by name"
            )
        if qualified not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise SqlRejected(
                f"the table {qualified!r} is not one of the datasets this question may use ({known})"
            )
        tables.add(qualified)
    return tables


def _literal_limit(query: exp.Query) -> int | None:
    """The query's own LIMIT when it is a plain non-negative integer, else None."""
    limit = query.args.get("limit")
    if not isinstance(limit, exp.Limit) or limit.args.get("limit_options") is not None:
        return None
    value = limit.expression
    if isinstance(value, exp.Literal) and not value.is_string and value.name.isdigit():
        return int(value.name)
    return None


def _cap_rows(query: exp.Query, max_rows: int) -> tuple[exp.Query, int, bool]:
    """Lower or add the top-level LIMIT; wrap the query when its limit is not a plain integer.

    A LIMIT set on the query itself keeps its ORDER BY meaningful; only an expression, percentage,
    FETCH or LIMIT ALL is wrapped as ``SELECT * FROM (<query>) AS guarded LIMIT max_rows``.
    """
    existing = _literal_limit(query)
    if existing is not None and existing <= max_rows:
        return query, existing, False
    if isinstance(query, exp.Select | exp.SetOperation) and (
        existing is not None or query.args.get("limit") is None
    ):
        query.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
        return query, max_rows, True
    wrapped = exp.select("*").from_(query.subquery("guarded")).limit(max_rows)
    return wrapped, max_rows, True
