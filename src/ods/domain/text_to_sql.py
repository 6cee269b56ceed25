"""Text-to-SQL prompts: describe the queryable tables compactly, ask for one SELECT, pull the SQL back out.

A small model writes better SQL when it sees each table as a ``CREATE TABLE`` with a line per column (type,
null share, range or frequent values) and a few sample rows. Everything here is pure and deterministic: the
same tables give the same prompt text, so prompts can be cached and compared in tests. What the model
answers is untrusted; :func:`extract_sql` only finds the statement, :func:`ods.domain.sql_guard.guard_sql`
decides whether it may run.

Personal data never reaches the prompt in clear: columns the profile (or, for external tables, the PII
detector) marks as personal data show masked sample values and no frequent values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from ods.domain.chat import ChatMessage
from ods.domain.pii import GENERIC_MASK, PII_KINDS, PiiKind, detect_pii_kind, mask_value
from ods.domain.refs import format_ref

MAX_VALUE_CHARS: Final = 40
"""Longest sample or example value shown; longer text is cut and ends with an ellipsis."""
MAX_EXAMPLES: Final = 3
MAX_SAMPLE_ROWS: Final = 3
MAX_CATEGORIES: Final = 50
"""Frequent values are shown for text columns with at most this many distinct values (categories)."""

_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# Words DuckDB (and PostgreSQL) reserve or treat as type and function names: quoted when used as names.
_RESERVED_TEXT: Final = """
    all analyse analyze and anti any array as asc asof asymmetric at authorization between bigint
    binary bit boolean both by case cast char character check coalesce collate collation column columns
    concurrently constraint create cross current_date current_role current_time current_timestamp
    current_user date dec decimal default deferrable desc describe distinct do else end except exists
    extract false fetch float for foreign freeze from full generated glob group grouping grouping_id
    having ilike in initially inner inout int integer intersect interval into is isnull join lambda
    lateral leading left like limit localtime localtimestamp map national natural nchar none not
    notnull null nullif numeric offset on only or order out outer overlaps overlay pivot pivot_longer
    pivot_wider placing position positional precision primary qualify real references returning right
    row select semi session_user setof show similar smallint some struct substring summarize symmetric
    table tablesample then time timestamp to trailing treat trim true try_cast tuple union unique
    unpack unpivot user using values varchar variadic verbose when where window with
"""
_RESERVED_WORDS: Final = frozenset(_RESERVED_TEXT.split())
# Arrow type names (as stored in a dataset version's schema) -> the DuckDB type a query sees.
_ARROW_TO_SQL: Final = (
    ("large_string", "VARCHAR"),
    ("string", "VARCHAR"),
    ("bool", "BOOLEAN"),
    ("int8", "TINYINT"),
    ("int16", "SMALLINT"),
    ("int32", "INTEGER"),
    ("int64", "BIGINT"),
    ("uint8", "UTINYINT"),
    ("uint16", "USMALLINT"),
    ("uint32", "UINTEGER"),
    ("uint64", "UBIGINT"),
    ("halffloat", "FLOAT"),
    ("float", "FLOAT"),
    ("double", "DOUBLE"),
    ("date32", "DATE"),
    ("date64", "DATE"),
    ("timestamp", "TIMESTAMP"),
    ("time64", "TIME"),
    ("time32", "TIME"),
    ("binary", "BLOB"),
    ("large_binary", "BLOB"),
    ("null", "NULL"),
)
_ARROW_DECIMAL = re.compile(r"decimal(?:32|64|128|256)?\((?P<precision>\d+),\s*(?P<scale>\d+)\)")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SQL_FENCE_TAGS: Final = frozenset({"sql", "duckdb", "postgresql", "postgres", "psql", "sqlite", "pgsql"})
_STATEMENT_START = re.compile(
    r"^\s*(?:SELECT|WITH|FROM|VALUES|TABLE|INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|ATTACH|COPY|PRAGMA|SET|"
    r"INSTALL|LOAD|EXPLAIN|CALL|\()\b",
    re.IGNORECASE,
)
# A bare query in prose: SELECT, or WITH name AS (, at a line start, after a colon or after a backtick.
_BARE_QUERY = re.compile(
    r"(?:^|(?<=[:`]))[ \t]*(?P<sql>SELECT\s|WITH\s+(?:RECURSIVE\s+)?(?:\"[^\"]+\"|\w+)\s*(?:\([^)]*\)\s*)?AS\s*\()",
    re.IGNORECASE | re.MULTILINE,
)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class ColumnDescription:
    """One column as the model sees it: SQL type, a one-line description, a few example values."""

    name: str
    type: str
    description: str = ""
    examples: tuple[str, ...] = ()
    pii_kind: str | None = None


@dataclass(frozen=True)
class TableDescription:
    """A queryable table: its SQL name, where it comes from (``sales@2``), size, columns, sample rows."""

    name: str
    dataset: str
    row_count: int | None
    columns: tuple[ColumnDescription, ...]
    sample_rows: tuple[dict[str, str], ...] = ()
    description: str | None = None


def quote_identifier(name: str) -> str:
    """``name`` as DuckDB/PostgreSQL SQL: bare when it is a plain lower-case word, else double-quoted."""
    if _PLAIN_IDENTIFIER.fullmatch(name) and name not in _RESERVED_WORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def sql_type_of_arrow(arrow_type: str) -> str:
    """The DuckDB type name of an Arrow type as stored in a version's schema (``int64`` -> ``BIGINT``)."""
    text = arrow_type.strip().lower()
    decimal = _ARROW_DECIMAL.fullmatch(text)
    if decimal:
        return f"DECIMAL({decimal['precision']},{decimal['scale']})"
    if text.startswith("timestamp[") and "tz=" in text:
        return "TIMESTAMPTZ"
    for prefix, sql_type in _ARROW_TO_SQL:
        if text == prefix or text.startswith((prefix + "[", prefix + "(")):
            return sql_type
    return arrow_type.upper()


def format_value(value: object, *, max_chars: int = MAX_VALUE_CHARS) -> str:
    """A value as short text for a prompt: ``NULL``, ISO dates, compact numbers, long text cut with ``…``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, datetime | date):
        text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    elif isinstance(value, Decimal | int):
        text = str(value)
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    else:
        text = str(value)
    text = " ".join(text.split())  # newlines and tabs would break the one-line-per-row layout
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def mask_sample_value(value: object, pii_kind: str | None) -> str:
    """A sample value safe for a prompt: personal data masked unless the stored value already is."""
    text = format_value(value, max_chars=10_000)
    if pii_kind is None or text == "NULL":
        return format_value(value)
    # Masked data keeps asterisks (``j***@example.com``); anything else in a PII column is masked here.
    shown = text if "*" in text else mask_value(text, _pii_kind(pii_kind))
    return format_value(shown or GENERIC_MASK)


def _pii_kind(kind: str) -> PiiKind | None:
    return kind if kind in PII_KINDS else None


def describe_dataset(
    name: str,
    *,
    version: int,
    row_count: int,
    schema: Mapping[str, Any],
    profile: Mapping[str, Any],
    sample_rows: Sequence[Mapping[str, object]] = (),
    description: str | None = None,
) -> TableDescription:
    """Describe a registered dataset version from its stored schema and profile (catalog fields, as data).

    ``schema`` is ``{"columns": [{"name", "type"}]}`` with Arrow type names; ``profile`` is the output of
    :func:`ods.domain.profiling.profile_frame`. Sample rows are cut to :data:`MAX_SAMPLE_ROWS`, their values
    shortened, and personal-data columns masked.
    """
    column_profiles: Mapping[str, Mapping[str, Any]] = profile.get("columns", {})
    columns = []
    for column in schema.get("columns", []):
        column_name = str(column["name"])
        facts = column_profiles.get(column_name, {})
        pii_kind = facts.get("pii_kind")
        columns.append(
            ColumnDescription(
                name=column_name,
                type=sql_type_of_arrow(str(column.get("type", ""))),
                description=_describe_profile(facts, row_count),
                examples=() if pii_kind else _top_examples(facts),
                pii_kind=pii_kind,
            )
        )
    return TableDescription(
        name=name,
        dataset=format_ref(name, version),
        row_count=row_count,
        columns=tuple(columns),
        sample_rows=_safe_samples(sample_rows, columns),
        description=description,
    )


def describe_table(
    name: str,
    *,
    source: str,
    column_types: Sequence[tuple[str, str]],
    sample_rows: Sequence[Mapping[str, object]] = (),
    row_count: int | None = None,
) -> TableDescription:
    """Describe a table of an external database from its reflected column types and a few rows.

    There is no stored profile, so personal data is detected from each column's name and sample values
    (:func:`ods.domain.pii.detect_pii_kind`) and masked in the samples.
    """
    columns = []
    for column_name, sql_type in column_types:
        values = [row.get(column_name) for row in sample_rows]
        texts = [value for value in values if isinstance(value, str)]
        pii_kind = detect_pii_kind(column_name, texts) if texts or _named_like_pii(column_name) else None
        note = f"personal data ({pii_kind}), masked" if pii_kind else ""
        columns.append(
            ColumnDescription(name=column_name, type=sql_type, description=note, pii_kind=pii_kind)
        )
    return TableDescription(
        name=name,
        dataset=source,
        row_count=row_count,
        columns=tuple(columns),
        sample_rows=_safe_samples(sample_rows, columns),
    )


def _named_like_pii(column_name: str) -> bool:
    return detect_pii_kind(column_name, []) is not None


def _safe_samples(
    rows: Sequence[Mapping[str, object]], columns: Sequence[ColumnDescription]
) -> tuple[dict[str, str], ...]:
    return tuple(
        {column.name: mask_sample_value(row.get(column.name), column.pii_kind) for column in columns}
        for row in rows[:MAX_SAMPLE_ROWS]
    )


def _percent(share: float) -> str:
    percent = share * 100
    if percent == 0:
        return "0%"
    if percent < 0.1:
        return "<0.1%"
    return f"{percent:.1f}".rstrip("0").rstrip(".") + "%"


def _describe_profile(facts: Mapping[str, Any], row_count: int) -> str:
    """One line from a column profile: nulls, then personal data, range or distinct count."""
    if not facts:
        return ""
    parts: list[str] = []
    null_rate = float(facts.get("null_rate") or 0.0)
    parts.append("no nulls" if null_rate == 0 else f"{_percent(null_rate)} null")
    pii_kind = facts.get("pii_kind")
    if pii_kind:
        parts.append(f"personal data ({pii_kind}), masked")
    dtype = facts.get("dtype")
    distinct = facts.get("distinct_count")
    if dtype == "bool" and facts.get("mean") is not None:
        parts.append(f"{_percent(float(facts['mean']))} true")
    elif facts.get("min") is not None and facts.get("max") is not None:
        span = f"{format_value(facts['min'])} to {format_value(facts['max'])}"
        if facts.get("mean") is not None and dtype in ("int", "float", "decimal"):
            span += f", mean {_rounded(facts['mean'])}"
        parts.append(span)
    if distinct is not None and dtype in ("string",):
        parts.append("all distinct" if row_count and distinct == row_count else f"{distinct} distinct")
    return "; ".join(parts)


def _rounded(value: object) -> str:
    try:
        return f"{float(value):.4g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return format_value(value)


def _top_examples(facts: Mapping[str, Any]) -> tuple[str, ...]:
    """Frequent values of a low-cardinality text column (what a WHERE clause should compare to)."""
    top = facts.get("top_values") or []
    distinct = facts.get("distinct_count")
    if facts.get("dtype") != "string" or distinct is None or distinct > MAX_CATEGORIES:
        return ()
    return tuple(format_value(entry.get("value")) for entry in top[:MAX_EXAMPLES])


def render_schema(tables: Sequence[TableDescription]) -> str:
    """The tables as compact ``CREATE TABLE`` text with per-column notes and sample rows (deterministic)."""
    return "\n\n".join(_render_table(table) for table in tables)


def _render_table(table: TableDescription) -> str:
    header = f"-- {table.name}: dataset {table.dataset}"
    if table.row_count is not None:
        header += f", {table.row_count} rows"
    if table.description:
        header += f". {format_value(table.description, max_chars=160)}"
    lines = [header, f"CREATE TABLE {quote_identifier(table.name)} ("]
    for index, column in enumerate(table.columns):
        comma = "," if index < len(table.columns) - 1 else ""
        notes = [column.description] if column.description else []
        if column.examples:
            notes.append("e.g. " + ", ".join(_sql_literal(value) for value in column.examples))
        comment = f" -- {'; '.join(notes)}" if notes else ""
        lines.append(f"  {quote_identifier(column.name)} {column.type}{comma}{comment}")
    lines.append(");")
    if table.sample_rows:
        names = [column.name for column in table.columns]
        lines.append(f"/* {len(table.sample_rows)} sample rows of {quote_identifier(table.name)}:")
        lines.append(" | ".join(names))
        lines.extend(" | ".join(row.get(name, "") for name in names) for row in table.sample_rows)
        lines.append("*/")
    return "\n".join(lines)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SYSTEM_PROMPT: Final = """\
You write one DuckDB SQL query that answers the user's question about the tables below.
Rules:
- Write exactly ONE SELECT statement (WITH ... SELECT is fine). Never modify data.
- Use only these tables and columns; copy names exactly as written.
- Compare text to the example values shown (same spelling and case).
- Return every group the question asks about: use LIMIT only when it asks for the top or bottom rows.
- Reply with the SQL only, inside a ```sql fenced block, no explanation.

Tables:
{schema}"""


def build_sql_messages(
    question: str, tables: Sequence[TableDescription], history: Sequence[ChatMessage] = ()
) -> list[ChatMessage]:
    """The chat for one Text-to-SQL turn: system rules + schema, one worked example, history, question.

    ``history`` holds earlier turns of the conversation (user questions, assistant SQL) so follow-ups such
    as "and per region?" can be resolved; system messages in it are dropped.
    """
    if not tables:
        raise ValueError("build_sql_messages needs at least one table to describe")
    messages = [ChatMessage("system", SYSTEM_PROMPT.format(schema=render_schema(tables)))]
    example_question, example_sql = _example(tables[0])
    messages.append(ChatMessage("user", example_question))
    messages.append(ChatMessage("assistant", f"```sql\n{example_sql}\n```"))
    messages.extend(message for message in history if message.role != "system")
    messages.append(ChatMessage("user", question.strip()))
    return messages


def _example(table: TableDescription) -> tuple[str, str]:
    """A worked example over the first table: a grouped count when it has a category column."""
    name = quote_identifier(table.name)
    category = next((column for column in table.columns if column.examples and column.pii_kind is None), None)
    if category is None:
        return f"How many rows does {table.name} have?", f"SELECT COUNT(*) AS row_count FROM {name};"  # noqa: S608 - prompt text, never run
    column = quote_identifier(category.name)
    return (
        f"How many {table.name} rows are there per {category.name}?",
        f"SELECT {column}, COUNT(*) AS row_count\nFROM {name}\nGROUP BY {column}\nORDER BY row_count DESC;",
    )


def extract_sql(model_text: str) -> str | None:
    """The SQL statement in a model's answer, or ``None`` when it holds none.

    A fenced block tagged ``sql`` (or a dialect) wins; then an untagged fence whose text starts like SQL;
    then a bare ``SELECT``/``WITH`` at a line start, after a colon or inside backticks, cut at the first
    ``;`` outside quotes or at a blank line. A fenced block is returned whole (minus a trailing ``;``), so
    two statements in one block reach the guard, which rejects them with a reason the model can act on.
    """
    fences = [(tag.lower(), body) for tag, body in _FENCE.findall(model_text)]
    for tag, body in fences:
        if tag in _SQL_FENCE_TAGS and body.strip():
            return _clean(body)
    for tag, body in fences:
        if not tag and _STATEMENT_START.match(body):
            return _clean(body)
    # Outside fences only: a fenced Python snippet mentioning SELECT must not be taken for the answer.
    prose = _FENCE.sub("\n\n", model_text)
    match = _BARE_QUERY.search(prose)
    if match is None:
        return None
    start = match.start("sql")
    in_backticks = prose[:start].rstrip(" \t").endswith("`")
    statement = _first_statement(prose[start:], stop_at_backtick=in_backticks)
    return _clean(statement)


def _first_statement(text: str, *, stop_at_backtick: bool) -> str:
    """Text up to the first ``;`` outside quotes and comments, a blank line, or a closing backtick."""
    blank = _BLANK_LINE.search(text)
    end = blank.start() if blank else len(text)
    quote: str | None = None
    index = 0
    while index < end:
        char = text[index]
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "-" and text.startswith("--", index):
            newline = text.find("\n", index)
            index = end if newline == -1 else newline
            continue
        elif char == ";" or (char == "`" and stop_at_backtick):
            return text[:index]
        index += 1
    return text[:end]


def _clean(sql: str) -> str | None:
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text or None


def drop_unordered_group_limit(sql: str, dialect: str) -> tuple[str, str | None]:
    """``sql`` without a top-level LIMIT that cuts a grouped result in no order, and a note saying so.

    Such a LIMIT keeps whichever groups the database happens to return first. The prompt asks for every
    group unless the question wants the top or bottom rows, yet SmolLM2-135M, asked "How many orders were
    delivered in each region?", wrote ``... GROUP BY region LIMIT 1``: one region, chosen by chance. With an
    ORDER BY (a top-N question) the LIMIT means something and is kept. SQL that does not parse is
    returned as it is, for the guard to judge; the row cap bounds the result either way.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        query = sqlglot.parse_one(sql, dialect=dialect)
    except (SqlglotError, ValueError, RecursionError):
        return sql, None
    limit = query.args.get("limit") if isinstance(query, exp.Select) else None
    if limit is None or query.args.get("group") is None or query.args.get("order") is not None:
        return sql, None
    query.set("limit", None)
    query.set("offset", None)
    note = (
        f"the model's {limit.sql(dialect=dialect)} was dropped: without ORDER BY it keeps arbitrary groups, "
        "so every group is shown (up to the row cap)"
    )
    return query.sql(dialect=dialect), note
