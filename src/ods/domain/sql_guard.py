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
* Functions are checked against an allowlist per dialect (:func:`allowed_functions`): the aggregate,
  string, date/time, math, conditional, list/JSON and window functions analysts' SELECTs use. Anything
  else is refused by name, so a function nobody thought of is refused rather than run. Functions that
  generate rows or values without a bound (``range``, ``generate_series`` and an ``unnest`` of them...)
  are never allowed; those that build a value of a requested size (``repeat``, ``lpad``, ``rpad``,
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

# Functions that generate rows or values of a size given as an argument, with no bound: an ``unnest`` of
# ``range(0, 2000000000)`` filled 24 GB before anything could stop it. Refused in every dialect.
UNBOUNDED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "range", "generate_series", "generate_subscripts", "sequence", "array_fill", "list_resize",
        "array_resize", "zeroblob", "randomblob", "bar", "space", "replicate",
    }
)  # fmt: skip

# The functions analysts' SELECTs use, by the name written in the query (compared after NFKC folding and
# lower-casing). A name on no list is refused. Standard SQL and what DuckDB, PostgreSQL and SQLite share:
_AGGREGATE_FUNCTIONS = frozenset(
    {
        "count", "sum", "avg", "min", "max", "string_agg", "array_agg", "bool_and", "bool_or",
        "stddev", "stddev_samp", "stddev_pop", "variance", "var_samp", "var_pop", "corr", "covar_pop",
        "covar_samp", "regr_slope", "regr_intercept", "regr_r2", "regr_count", "regr_avgx", "regr_avgy",
        "regr_sxx", "regr_syy", "regr_sxy", "percentile_cont", "percentile_disc", "mode", "bit_and",
        "bit_or", "bit_xor", "grouping",
    }
)  # fmt: skip
_WINDOW_FUNCTIONS = frozenset(
    {
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
        "first_value", "last_value", "nth_value",
    }
)  # fmt: skip
_SCALAR_FUNCTIONS = frozenset(
    {
        # conditional
        "coalesce", "nullif", "greatest", "least",
        # string (repeat, lpad, rpad and format only with a literal size; see _check_generated_size)
        "lower", "upper", "length", "char_length", "character_length", "octet_length", "trim", "ltrim",
        "rtrim", "substring", "substr", "left", "right", "replace", "concat", "concat_ws", "position",
        "strpos", "split_part", "regexp_replace", "reverse", "md5", "ascii", "chr", "translate",
        "starts_with", "repeat", "lpad", "rpad", "format",
        # math
        "abs", "round", "ceil", "ceiling", "floor", "trunc", "sqrt", "cbrt", "power", "pow", "exp", "ln",
        "log", "log10", "sign", "mod", "pi", "sin", "cos", "tan", "asin", "acos", "atan", "atan2",
        "cot", "degrees", "radians", "random", "gcd", "lcm", "factorial",
        # date and time
        "date_trunc", "date_part", "current_date", "current_timestamp", "current_time", "localtimestamp",
        "localtime", "now", "age", "to_timestamp",
    }
)  # fmt: skip
_STANDARD_FUNCTIONS = _AGGREGATE_FUNCTIONS | _WINDOW_FUNCTIONS | _SCALAR_FUNCTIONS
_DUCKDB_FUNCTIONS = _STANDARD_FUNCTIONS | frozenset(
    {
        # aggregates
        "median", "quantile", "quantile_cont", "quantile_disc", "approx_quantile", "approx_count_distinct",
        "arg_max", "arg_min", "max_by", "min_by", "argmax", "argmin", "first", "last", "any_value",
        "count_if", "countif", "list", "listagg", "group_concat", "product", "fsum", "sumkahan",
        "kahan_sum", "kurtosis", "kurtosis_pop", "skewness", "entropy", "histogram", "favg", "mad",
        "geomean", "geometric_mean", "weighted_avg", "sem", "mean",
        # string
        "lcase", "ucase", "len", "strlen", "contains", "ends_with", "suffix", "prefix", "instr",
        "string_split", "str_split", "string_split_regex", "str_split_regex", "string_to_array",
        "regexp_matches", "regexp_extract", "regexp_extract_all", "regexp_full_match",
        "regexp_split_to_array", "levenshtein", "damerau_levenshtein", "hamming", "jaccard",
        "jaro_similarity", "jaro_winkler_similarity", "sha256", "sha1", "hash", "to_base64",
        "from_base64", "base64", "hex", "unhex", "to_hex", "strip_accents", "nfc_normalize",
        "array_to_string", "printf", "unicode", "ord", "like_escape", "ilike_escape", "bit_length",
        "encode", "decode",
        # date and time
        "year", "month", "day", "dayofweek", "dayofmonth", "dayofyear", "week", "weekofyear", "weekday",
        "quarter", "hour", "minute", "second", "millisecond", "microsecond", "epoch", "epoch_ms",
        "epoch_us", "epoch_ns", "isodow", "isoyear", "yearweek", "dayname", "monthname", "last_day",
        "century", "decade", "millennium", "strftime", "strptime", "try_strptime", "date_diff",
        "datediff", "date_sub", "datesub", "date_add", "datepart", "datetrunc", "time_bucket", "today",
        "make_date", "make_time", "make_timestamp", "to_days", "to_weeks", "to_months", "to_years",
        "to_hours", "to_minutes", "to_seconds", "current_localtimestamp", "get_current_timestamp",
        "transaction_timestamp",
        # math
        "log2", "even", "round_even", "roundbankers", "bit_count", "isnan", "isinf", "isfinite", "signbit",
        "fdiv", "fmod",
        # conditional and types
        "if", "ifnull", "typeof",
        # lists, structs, maps and JSON
        "unnest", "list_value", "list_pack", "list_extract", "list_element", "array_extract",
        "list_slice", "array_slice", "list_contains", "array_contains", "list_has", "array_has",
        "list_position", "array_position", "list_sort", "array_sort", "list_reverse_sort",
        "list_distinct", "array_distinct", "list_unique", "array_unique", "list_sum", "list_min",
        "list_max", "list_avg", "list_count", "list_concat", "array_concat", "list_cat", "array_cat",
        "flatten", "list_transform", "array_transform", "list_apply", "array_apply", "apply",
        "list_filter", "array_filter", "filter", "list_reduce", "array_reduce", "reduce",
        "array_length", "cardinality", "list_has_any", "list_has_all", "array_has_any", "array_has_all",
        "struct_pack", "struct_extract", "row", "map", "map_extract", "element_at", "map_keys",
        "map_values", "json_extract", "json_extract_string", "json_extract_path",
        "json_extract_path_text", "json_array_length", "json_valid", "json_type", "to_json", "json_keys",
        "json_value", "json_exists", "columns",
    }
)  # fmt: skip
_POSTGRES_FUNCTIONS = _STANDARD_FUNCTIONS | frozenset(
    {
        # aggregates
        "every", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
        # string
        "btrim", "initcap", "to_char", "to_number", "regexp_match", "regexp_matches",
        "regexp_split_to_array", "regexp_split_to_table", "regexp_count", "regexp_like", "regexp_substr",
        "regexp_instr", "string_to_array", "array_to_string", "sha256", "quote_literal", "to_hex",
        # date and time
        "to_date", "make_date", "make_time", "make_timestamp", "make_interval", "justify_days",
        "justify_hours", "justify_interval", "date_bin", "isfinite", "transaction_timestamp",
        "statement_timestamp",
        # math
        "div", "width_bucket", "scale", "trim_scale", "num_nulls", "num_nonnulls",
        # arrays and JSON
        "unnest", "array_length", "cardinality", "array_position", "array_positions", "array_append",
        "array_prepend", "array_cat", "array_remove", "array_lower", "array_upper", "json_build_object",
        "jsonb_build_object", "json_build_array", "jsonb_build_array", "to_json", "to_jsonb",
        "json_extract_path", "json_extract_path_text", "jsonb_extract_path", "jsonb_extract_path_text",
        "json_array_length", "jsonb_array_length", "json_typeof", "jsonb_typeof",
    }
)  # fmt: skip
_SQLITE_FUNCTIONS = _WINDOW_FUNCTIONS | frozenset(
    {
        "count", "sum", "avg", "min", "max", "total", "group_concat", "string_agg", "coalesce", "nullif",
        "ifnull", "iif", "lower", "upper", "length", "octet_length", "trim", "ltrim", "rtrim", "substr",
        "substring", "replace", "instr", "printf", "format", "char", "unicode", "hex", "quote", "abs",
        "round", "random", "sign", "typeof", "date", "time", "datetime", "julianday", "strftime",
        "unixepoch", "concat", "concat_ws", "ceil", "ceiling", "floor", "trunc", "ln", "log", "log10",
        "log2", "exp", "pow", "power", "sqrt", "mod", "pi", "sin", "cos", "tan", "asin", "acos", "atan",
        "atan2", "degrees", "radians", "json_extract", "json_array_length", "json_type", "json_valid",
        "json_object", "json_array", "json_group_array", "json_group_object", "likely", "unlikely",
    }
)  # fmt: skip
_ALLOWED_BY_DIALECT = {
    "duckdb": _DUCKDB_FUNCTIONS,
    "postgres": _POSTGRES_FUNCTIONS,
    "sqlite": _SQLITE_FUNCTIONS,
}

# Functions sqlglot builds from special syntax or operators rather than from a name it records (CASE,
# CAST and ``::``, EXTRACT(... FROM ...), TRIM(... FROM ...), ``x ->> 'a'``, ``x ~ 'a'``, ``[1, 2]``, and
# the aggregates its dialects parse by hand): allowed by their sqlglot class.
_SYNTAX_FUNCTIONS: tuple[type[exp.Expr], ...] = (
    exp.Connector, exp.Exists, exp.Any, exp.All, exp.Case, exp.If, exp.Cast, exp.TryCast, exp.Extract,
    exp.Trim, exp.Substring, exp.StrPosition, exp.Map, exp.VarMap,
    exp.Overlay, exp.CurrentDate, exp.CurrentTimestamp, exp.CurrentTime, exp.Localtimestamp,
    exp.Localtime, exp.Array, exp.Struct, exp.Columns, exp.Collate, exp.RegexpLike, exp.RegexpILike,
    exp.Pow, exp.Sqrt, exp.StartsWith, exp.ArrayContainsAll, exp.ArrayOverlaps, exp.ArrayContainedBy,
    exp.JSONExtract, exp.JSONExtractScalar, exp.JSONBExtract, exp.JSONBExtractScalar,
    exp.JSONBContainsTopKey, exp.Min, exp.Max, exp.Count, exp.Quantile, exp.PercentileCont,
    exp.PercentileDisc, exp.GroupConcat, exp.AnyValue, exp.ArgMax, exp.ArgMin, exp.ApproxQuantile,
    exp.Initcap, exp.Chr, exp.Ceil, exp.Floor, exp.TsOrDsToTimestamp, exp.JSONArrayAgg, exp.JSONObject,
)  # fmt: skip

# The written function name is recorded on the nodes sqlglot builds from its function table.
_NAME_META_KEY = "ods_function_name"


def allowed_functions(dialect: str) -> frozenset[str]:
    """Names of the functions a guarded query may call in ``dialect`` (standard SQL for other dialects)."""
    return _ALLOWED_BY_DIALECT.get(dialect, _STANDARD_FUNCTIONS)


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
    on_list = name in allowed if written else isinstance(node, _SYNTAX_FUNCTIONS)
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
