"""Which functions a guarded query may call: the allowlist per dialect, and the names refused everywhere.

:func:`ods.domain.sql_guard.guard_sql` refuses a function on no list by name, so a function nobody
thought of is refused rather than run. Names are compared after NFKC folding and lower-casing.
"""

from __future__ import annotations

from sqlglot import exp

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
SYNTAX_FUNCTIONS: tuple[type[exp.Expr], ...] = (
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


def allowed_functions(dialect: str) -> frozenset[str]:
    """Names of the functions a guarded query may call in ``dialect`` (standard SQL for other dialects)."""
    return _ALLOWED_BY_DIALECT.get(dialect, _STANDARD_FUNCTIONS)
