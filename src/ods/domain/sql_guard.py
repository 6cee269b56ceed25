"""The guard every LLM-written SQL statement passes before it runs.

Text-to-SQL answers are untrusted input. :func:`guard_sql` parses them with sqlglot (the AST, never regexes
on the text), accepts exactly one read-only query over an allowlist of tables, and renders it back with a
row cap. Anything else raises :class:`SqlRejected` with a one-line reason; nothing is ever executed here.

Policy decisions (kept deliberately strict, since a false rejection costs a retry and a false acceptance
costs data, or the machine's memory):

* Only queries: SELECT, UNION/INTERSECT/EXCEPT, CTEs, subqueries, joins, aggregates, window functions.
* ``WITH RECURSIVE`` is rejected: DuckDB materialises a recursive CTE before an outer LIMIT applies, so
  the row cap does not stop an unbounded recursion.
* Tables in FROM must be named in ``allowed_tables`` (or be a CTE visible at that point); table functions
  (``read_csv``, ``generate_series``, ``query``...) and file/URL names used as tables are rejected.
* Functions are checked against an allowlist per dialect (:func:`allowed_functions`, kept with the
  denied and unbounded names in :mod:`ods.domain.sql_functions`): the aggregate, string, date/time,
  math, conditional, list/JSON and window functions analysts' SELECTs use. Anything else is refused by
  name, so a function nobody thought of is refused rather than run. Functions that generate rows or
  values without a bound (``range``, ``generate_series`` and an ``unnest`` of them...) are never
  allowed; those that build a value of a requested size (``repeat``, ``lpad``, ``rpad``,
  ``printf``/``format`` widths) only with a literal size of at most :data:`MAX_GENERATED_CHARS`.
  Functions are called by name: the ``value.function()`` method form is refused.
* Comments are dropped from the rendered SQL, so nothing hidden in them reaches the database, and the
  rendered SQL is parsed and checked again: what runs is what was checked.
* The row cap sets or lowers the query's own top-level LIMIT (its ORDER BY keeps its meaning); a LIMIT
  that is not a plain integer (expression, percentage, FETCH, ALL) is wrapped as
  ``SELECT * FROM (<query>) AS guarded LIMIT max_rows``.

The guard is the first of two lines: it cannot bound every way a query grows (a chain of CTEs doubling a
string with ``||``, an aggregate over a cross join), so the warehouse also runs each query under memory,
thread, temporary-disk, result-size and time limits (``ods.adapters.warehouse``).

Written against sqlglot 30's AST (``exp.Expr``, the ``with_`` argument key).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, SqlglotError

from ods.domain.sql_functions import (
    DENIED_FUNCTIONS,
    SYNTAX_FUNCTIONS,
    UNBOUNDED_FUNCTIONS,
    allowed_functions,
)
from ods.errors import OdsError

MAX_SQL_CHARS = 20_000
MAX_GENERATED_CHARS = 10_000
"""The most characters ``repeat``, ``lpad``, ``rpad`` or a ``printf``/``format`` width may ask for."""
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

# The written function name is recorded on the nodes sqlglot builds from its function table.
_NAME_META_KEY = "ods_function_name"


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
        _reject_forbidden_nodes(query, dialect)
        tables = _check_tables(query, allowed)
        capped, limit, imposed = _cap_rows(query, max_rows)
        rendered = capped.sql(dialect=dialect, comments=False, unsupported_level=ErrorLevel.RAISE)
        # What runs is the rendered text, so it must pass the same checks as the text that came in.
        reparsed = _parse_single_query(rendered, dialect)
        _reject_forbidden_nodes(reparsed, dialect)
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


def _parser_dialect(dialect: str) -> Dialect:
    """A fresh ``dialect`` instance whose parser records each function's name as written."""
    try:
        parser_dialect = Dialect.get_or_raise(dialect)  # a new instance for a dialect given by name
    except ValueError as error:  # unknown dialect name
        raise SqlRejected(f"cannot check SQL for dialect {dialect!r}: {error}") from None
    parser_dialect.ORIGINAL_NAME_META_KEY = _NAME_META_KEY
    return parser_dialect


def _parse_single_query(sql: str, dialect: str) -> exp.Query:
    parser_dialect = _parser_dialect(dialect)
    try:
        statements = [
            statement
            for statement in sqlglot.parse(sql, dialect=parser_dialect, error_level=ErrorLevel.IMMEDIATE)
            if statement is not None
        ]
    except RecursionError:
        raise SqlRejected(f"the SQL statement is nested too deeply to check; {_HINT}") from None
    except SqlglotError as error:
        raise SqlRejected(f"the SQL does not parse as {dialect}: {_summarise(error)}") from None
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


def _reject_forbidden_nodes(query: exp.Query, dialect: str) -> None:
    """Walk the whole tree: modifying statements hide in CTEs and subqueries, functions anywhere."""
    allowed = allowed_functions(dialect)
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
            _check_function(node, allowed, dialect)
        elif isinstance(node, _FORBIDDEN_NODES):
            raise SqlRejected(f"{_statement_name(node)} is not allowed inside a query; {_HINT}")


def _function_name(node: exp.Func) -> tuple[str, bool]:
    """The function's name, folded, and whether it is the name written in the query.

    Nodes sqlglot builds from special syntax (CAST, EXTRACT, operators) carry no written name; they are
    named by their sqlglot class instead.
    """
    if isinstance(node, exp.Anonymous):
        return _fold(node.name), True
    written = node.meta.get(_NAME_META_KEY)
    if isinstance(written, str) and written:
        return _fold(written), True
    return _fold(type(node).sql_names()[0]), False


def _check_function(node: exp.Func, allowed: frozenset[str], dialect: str) -> None:
    name, written = _function_name(node)
    if name in DENIED_FUNCTIONS:
        raise SqlRejected(
            f"the function {name}() is not allowed: it can read files, reach other systems, "
            f"change settings or stall the database; {_HINT}"
        )
    if name in UNBOUNDED_FUNCTIONS or isinstance(node, exp.GenerateSeries | exp.ExplodingGenerateSeries):
        raise SqlRejected(
            f"the function {name}() is not allowed: it generates rows or values of any size asked for "
            "(even inside unnest or a subquery with a LIMIT); query the registered datasets instead"
        )
    on_list = name in allowed if written else isinstance(node, SYNTAX_FUNCTIONS)
    if not on_list:
        raise SqlRejected(
            f"the function {name}() is not on the list of functions allowed in {dialect} queries "
            "(aggregate, string, date/time, math, conditional and window functions); "
            "rewrite the query without it"
        )
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        raise SqlRejected(
            f"{_snippet(parent)!r} calls {name}() on a value or schema; call it as {name}(...) instead"
        )
    _check_generated_size(node, name)


_FORMAT_FUNCTIONS = frozenset({"printf", "format"})
_SIZED_FUNCTIONS = frozenset({"repeat", "lpad", "rpad", *_FORMAT_FUNCTIONS})


def _check_generated_size(node: exp.Func, name: str) -> None:
    """``repeat``/``lpad``/``rpad`` with a literal size, ``printf``/``format`` with literal widths, both
    within :data:`MAX_GENERATED_CHARS`; a value made by one of them is not repeated again."""
    if isinstance(node, exp.Repeat) or (isinstance(node, exp.Anonymous) and name == "repeat"):
        text, size = _arguments(node, "this", "times")
        _check_size_argument(name, "count", size)
        assert size is not None
        count = _integer_literal(size) or 0
        if isinstance(text, exp.Literal) and text.is_string and count * len(text.name) > MAX_GENERATED_CHARS:
            raise SqlRejected(
                f"repeat() may build at most {MAX_GENERATED_CHARS:,} characters, but {_snippet(node)} "
                f"asks for {count * len(text.name):,}; repeat less"
            )
        if text is not None and any(_is_sized(inner) for inner in text.walk()):
            raise SqlRejected(
                f"{_snippet(node)} repeats a value that repeat, lpad, rpad or format already built; "
                f"build the text in one call of at most {MAX_GENERATED_CHARS:,} characters"
            )
    elif isinstance(node, exp.Pad) or (isinstance(node, exp.Anonymous) and name in ("lpad", "rpad")):
        _, size = _arguments(node, "this", "expression")
        _check_size_argument(name, "width", size)
    elif isinstance(node, exp.Format) or (isinstance(node, exp.Anonymous) and name in _FORMAT_FUNCTIONS):
        template, _ = _arguments(node, "this", "")
        _check_format_template(name, node, template)


def _is_sized(node: exp.Expr) -> bool:
    if isinstance(node, exp.Repeat | exp.Pad | exp.Format):
        return True
    return isinstance(node, exp.Anonymous) and _fold(node.name) in _SIZED_FUNCTIONS


def _arguments(node: exp.Func, first: str, second: str) -> tuple[exp.Expr | None, exp.Expr | None]:
    """The first two arguments of a sized function, parsed (by sqlglot's argument names) or not."""
    if isinstance(node, exp.Anonymous):
        values = node.expressions
        return (values[0] if values else None), (values[1] if len(values) > 1 else None)
    return node.args.get(first), (node.args.get(second) if second else None)


def _check_size_argument(name: str, what: str, size: exp.Expr | None) -> None:
    value = _integer_literal(size) if size is not None else None
    if value is None:
        shown = f"got {_snippet(size)!r}" if size is not None else "none was given"
        raise SqlRejected(
            f"{name}() needs its {what} as a whole-number literal of at most {MAX_GENERATED_CHARS:,} "
            f"({shown}), so the size of what it builds is known before the query runs"
        )
    if value > MAX_GENERATED_CHARS:
        raise SqlRejected(
            f"{name}() may build at most {MAX_GENERATED_CHARS:,} characters, but its {what} is "
            f"{value:,}; ask for at most {MAX_GENERATED_CHARS:,}"
        )


def _check_format_template(name: str, node: exp.Func, template: exp.Expr | None) -> None:
    if not (isinstance(template, exp.Literal) and template.is_string):
        raise SqlRejected(
            f"{name}() needs its format as a string literal, so its field widths are known before the "
            f"query runs (got {_snippet(node)!r})"
        )
    text = template.name
    # '*' takes a width from the arguments (printf); '{' inside '{...}' does the same for format().
    if "*" in text or re.search(r"\{[^{}]*\{", text):
        raise SqlRejected(
            f"{name}() may not take a field width from its arguments ('*' or a nested '{{}}' in "
            f"{text!r}); write the width into the format, at most {MAX_GENERATED_CHARS:,}"
        )
    widest = max((int(digits) for digits in re.findall(r"\d+", text)), default=0)
    if widest > MAX_GENERATED_CHARS:
        raise SqlRejected(
            f"{name}() may pad a value to at most {MAX_GENERATED_CHARS:,} characters, but its format "
            f"{text if len(text) <= 40 else text[:37] + '...'!r} holds {widest:,}"
        )


def _integer_literal(node: exp.Expr) -> int | None:
    """The value of a whole-number literal, also inside parentheses, a cast or a minus sign."""
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    if isinstance(node, exp.Neg):
        value = _integer_literal(node.this)
        return -value if value is not None else None
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        number = Decimal(node.name)
    except InvalidOperation:
        return None
    return int(number) if number.is_finite() and number == number.to_integral_value() else None


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


__all__ = [
    "DENIED_FUNCTIONS",
    "MAX_GENERATED_CHARS",
    "MAX_SQL_CHARS",
    "UNBOUNDED_FUNCTIONS",
    "GuardedQuery",
    "SqlRejected",
    "allowed_functions",
    "guard_sql",
]
