"""Text-to-SQL prompt building and SQL extraction: deterministic prompts, masked personal data, robust parsing."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ods.domain.chat import ChatMessage
from ods.domain.sql_guard import guard_sql
from ods.domain.text_to_sql import (
    MAX_SAMPLE_ROWS,
    MAX_VALUE_CHARS,
    TableDescription,
    build_sql_messages,
    describe_dataset,
    describe_table,
    drop_unordered_group_limit,
    extract_sql,
    format_value,
    quote_identifier,
    render_schema,
    sql_type_of_arrow,
)

SCHEMA: dict[str, Any] = {
    "columns": [
        {"name": "order_id", "type": "int64"},
        {"name": "order_date", "type": "date32[day]"},
        {"name": "customer_email", "type": "string"},
        {"name": "region", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "returned", "type": "bool"},
        {"name": "note", "type": "large_string"},
        {"name": "Order Status", "type": "string"},
    ]
}
PROFILE: dict[str, Any] = {
    "row_count": 1000,
    "columns": {
        "order_id": {"dtype": "int", "null_rate": 0.0, "distinct_count": 1000, "min": 1, "max": 1000,
                     "mean": 500.5, "top_values": None, "pii_kind": None},
        "order_date": {"dtype": "date", "null_rate": 0.012, "distinct_count": 300, "min": "2023-01-01",
                       "max": "2025-12-31", "mean": None, "top_values": None, "pii_kind": None},
        "customer_email": {"dtype": "string", "null_rate": 0.0, "distinct_count": 333, "min": None, "max": None,
                           "mean": None, "pii_kind": "email",
                           "top_values": [{"value": "j***@example.com", "count": 9}]},
        "region": {"dtype": "string", "null_rate": 0.0, "distinct_count": 4, "min": None, "max": None,
                   "mean": None, "pii_kind": None,
                   "top_values": [{"value": "North", "count": 300}, {"value": "South", "count": 250},
                                  {"value": "O'Hara", "count": 5}, {"value": "West", "count": 1}]},
        "amount": {"dtype": "float", "null_rate": 0.0005, "distinct_count": 900, "min": 1.5, "max": 499.25,
                   "mean": 250.123456, "top_values": None, "pii_kind": None},
        "returned": {"dtype": "bool", "null_rate": 0.0, "distinct_count": 2, "mean": 0.1, "min": None,
                     "max": None, "top_values": [{"value": False, "count": 900}], "pii_kind": None},
        "note": {"dtype": "string", "null_rate": 0.5, "distinct_count": 500, "min": None, "max": None,
                 "mean": None, "top_values": [{"value": "x", "count": 2}], "pii_kind": None},
        "Order Status": {"dtype": "string", "null_rate": 0.0, "distinct_count": 2, "min": None, "max": None,
                         "mean": None, "top_values": [{"value": "open", "count": 2}], "pii_kind": None},
    },
}  # fmt: skip
ROWS = [
    {"order_id": 1, "order_date": date(2024, 1, 2), "customer_email": "jane.doe@example.com", "region": "North",
     "amount": 12.5, "returned": False, "note": "n" * 500, "Order Status": "open"},
    {"order_id": 2, "order_date": date(2024, 1, 3), "customer_email": "j***@example.com", "region": "South",
     "amount": None, "returned": True, "note": "line one\nline two", "Order Status": "open"},
    {"order_id": 3, "order_date": None, "customer_email": None, "region": "West", "amount": 1.0,
     "returned": None, "note": None, "Order Status": "closed"},
    {"order_id": 4, "order_date": None, "customer_email": "x@y.org", "region": "West", "amount": 2.0,
     "returned": None, "note": None, "Order Status": "closed"},
]  # fmt: skip


def sales(version: int = 2, rows: list[dict[str, Any]] | None = None) -> TableDescription:
    return describe_dataset(
        "sales",
        version=version,
        row_count=1000,
        schema=SCHEMA,
        profile=PROFILE,
        sample_rows=ROWS if rows is None else rows,
        description="Orders with masked e-mails",
    )


def test_describe_dataset_derives_types_and_notes_from_the_profile() -> None:
    table = sales()
    columns = {column.name: column for column in table.columns}
    assert table.dataset == "sales@2"
    assert [column.name for column in table.columns] == [column["name"] for column in SCHEMA["columns"]]
    assert columns["order_id"].type == "BIGINT"
    assert columns["order_date"].type == "DATE"
    assert columns["note"].type == "VARCHAR"
    assert columns["order_id"].description == "no nulls; 1 to 1000, mean 500.5"
    assert columns["order_date"].description == "1.2% null; 2023-01-01 to 2025-12-31"
    assert columns["amount"].description == "<0.1% null; 1.5 to 499.25, mean 250.1"
    assert columns["returned"].description == "no nulls; 10% true"
    assert columns["region"].examples == ("North", "South", "O'Hara")
    assert columns["note"].examples == ()  # 500 distinct values: not a category
    assert "personal data (email), masked" in columns["customer_email"].description
    assert columns["customer_email"].examples == ()  # frequent values of PII never shown


def test_sample_rows_are_cut_masked_and_single_line() -> None:
    table = sales()
    assert len(table.sample_rows) == MAX_SAMPLE_ROWS
    first, second, third = table.sample_rows
    assert first["customer_email"] == "j***@example.com"  # clear e-mail masked here
    assert second["customer_email"] == "j***@example.com"  # already masked: kept
    assert third["customer_email"] == "NULL"
    assert len(first["note"]) == MAX_VALUE_CHARS and first["note"].endswith("…")
    assert second["note"] == "line one line two"
    assert second["amount"] == "NULL" and second["returned"] == "true"
    assert "jane" not in render_schema([table])


def test_external_table_pii_is_detected_from_name_and_values() -> None:
    table = describe_table(
        "public.customers",
        source="warehouse table public.customers",
        column_types=[("id", "INTEGER"), ("contact", "VARCHAR(80)"), ("phone", "TEXT")],
        sample_rows=[
            {"id": 1, "contact": "alice@example.com", "phone": "+44 7700 900123"},
            {"id": 2, "contact": "bob@example.org", "phone": "+44 7700 900456"},
        ],
    )
    kinds = {column.name: column.pii_kind for column in table.columns}
    assert kinds == {"id": None, "contact": "email", "phone": "phone"}
    assert table.sample_rows[0] == {"id": "1", "contact": "a***@example.com", "phone": "+** **** **0123"}
    assert "alice" not in render_schema([table]) and "900123" not in render_schema([table])


def test_render_schema_is_deterministic_and_quotes_identifiers() -> None:
    text = render_schema([sales(), sales(version=2)])
    assert text == render_schema([sales(), sales(version=2)])
    first = text.split("\n\n")[0]
    assert first.splitlines()[0] == "-- sales: dataset sales@2, 1000 rows. Orders with masked e-mails"
    assert "CREATE TABLE sales (" in first
    assert "  \"Order Status\" VARCHAR -- no nulls; 2 distinct; e.g. 'open'" in first
    assert "  region VARCHAR, -- no nulls; 4 distinct; e.g. 'North', 'South', 'O''Hara'" in first
    assert "/* 3 sample rows of sales:" in first
    assert first.endswith("*/")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("sales", "sales"), ("order", '"order"'), ("date", '"date"'), ("Order ID", '"Order ID"'),
     ('a"b', '"a""b"'), ("_x1", "_x1"), ("1st", '"1st"'), ("Sales", '"Sales"')],
)  # fmt: skip
def test_quote_identifier(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


@pytest.mark.parametrize(
    ("arrow", "sql"),
    [("int64", "BIGINT"), ("double", "DOUBLE"), ("string", "VARCHAR"), ("large_string", "VARCHAR"),
     ("bool", "BOOLEAN"), ("date32[day]", "DATE"), ("timestamp[ns]", "TIMESTAMP"),
     ("timestamp[us, tz=UTC]", "TIMESTAMPTZ"), ("decimal128(10, 2)", "DECIMAL(10,2)"), ("list<item: int64>", "LIST<ITEM: INT64>")],
)  # fmt: skip
def test_sql_type_of_arrow(arrow: str, sql: str) -> None:
    assert sql_type_of_arrow(arrow) == sql


def test_format_value() -> None:
    assert format_value(None) == "NULL"
    assert format_value(float("nan")) == "NULL"
    assert format_value(1 / 3) == "0.333333"
    assert format_value(b"abc") == "<3 bytes>"
    assert format_value("x" * 100, max_chars=10) == "x" * 9 + "…"


def test_build_sql_messages_holds_rules_schema_example_history_and_question() -> None:
    history = [
        ChatMessage("system", "old system prompt"),
        ChatMessage("user", "Total amount?"),
        ChatMessage("assistant", "```sql\nSELECT SUM(amount) FROM sales\n```"),
    ]
    messages = build_sql_messages("  And per region?  ", [sales()], history)
    roles = [message.role for message in messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    system = messages[0].content
    assert "ONE SELECT" in system and "```sql" in system and "DuckDB" in system
    assert render_schema([sales()]) in system
    assert "old system prompt" not in "".join(message.content for message in messages)
    example = messages[2].content
    assert example.startswith("```sql\n") and example.endswith("\n```")
    assert "GROUP BY region" in example  # the example uses a real category column of the first table
    assert messages[-1] == ChatMessage("user", "And per region?")
    # The worked example itself passes the guard.
    sql = extract_sql(example)
    assert sql is not None
    guard_sql(sql, allowed_tables=["sales"])


def test_build_sql_messages_example_without_category_counts_rows() -> None:
    table = describe_table("t", source="t", column_types=[("id", "INTEGER")])
    messages = build_sql_messages("q", [table])
    assert messages[2].content == "```sql\nSELECT COUNT(*) AS row_count FROM t;\n```"
    with pytest.raises(ValueError, match="at least one table"):
        build_sql_messages("q", [])


EXTRACTIONS = [
    pytest.param("```sql\nSELECT region, SUM(amount) FROM sales GROUP BY region;\n```",
                 "SELECT region, SUM(amount) FROM sales GROUP BY region", id="fenced"),
    pytest.param("Here is the query:\n\n```SQL\nSELECT 1\n```\nIt returns one.", "SELECT 1", id="fenced-upper-tag"),
    pytest.param("```duckdb\nSELECT 2\n```", "SELECT 2", id="dialect-tag"),
    pytest.param("```\nWITH t AS (SELECT 1 AS x) SELECT x FROM t\n```", "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
                 id="untagged-fence"),
    pytest.param("```python\nprint('SELECT 1')\n```\n```sql\nSELECT 3\n```", "SELECT 3", id="sql-fence-after-python"),
    pytest.param("```python\nx = 'SELECT 1'\n```", None, id="python-only"),
    pytest.param("```sql\nSELECT 4 FROM sales", "SELECT 4 FROM sales", id="unterminated-fence"),
    pytest.param("SELECT COUNT(*) FROM sales;", "SELECT COUNT(*) FROM sales", id="bare"),
    pytest.param("select count(*)\nfrom sales\nwhere region = 'North'", "select count(*)\nfrom sales\nwhere region = 'North'",
                 id="bare-multiline-lowercase"),
    pytest.param("The answer is:\nSELECT MAX(amount) FROM sales;\nThis gives the maximum.",
                 "SELECT MAX(amount) FROM sales", id="bare-with-prose"),
    pytest.param("SQL: SELECT 1 AS one\n\nExplanation: it selects one.", "SELECT 1 AS one", id="label-and-blank-line"),
    pytest.param("Run `SELECT COUNT(*) FROM sales` to count.", "SELECT COUNT(*) FROM sales", id="inline-backticks"),
    pytest.param("WITH big AS (SELECT * FROM sales WHERE amount > 10)\nSELECT COUNT(*) FROM big",
                 "WITH big AS (SELECT * FROM sales WHERE amount > 10)\nSELECT COUNT(*) FROM big", id="bare-cte"),
    pytest.param("SELECT 'a;b' AS x; SELECT 2", "SELECT 'a;b' AS x", id="semicolon-in-string"),
    pytest.param("SELECT 1 -- one; two\n, 2; DROP TABLE sales", "SELECT 1 -- one; two\n, 2", id="semicolon-in-comment"),
    pytest.param("SELECT 1; DROP TABLE sales;", "SELECT 1", id="two-bare-statements-first-kept"),
    pytest.param("```sql\nSELECT 1;\nDROP TABLE sales;\n```", "SELECT 1;\nDROP TABLE sales",
                 id="two-statements-in-fence-left-for-the-guard"),
    pytest.param("```sql\nDROP TABLE sales\n```", "DROP TABLE sales", id="fenced-non-select-left-for-the-guard"),
    pytest.param("I cannot answer that from these tables.", None, id="no-sql"),
    pytest.param("With pleasure! You should select the region.", None, id="prose-with-and-select"),
    pytest.param("", None, id="empty"),
    pytest.param("```sql\n\n```", None, id="empty-fence"),
    pytest.param("```sql\n;\n```", None, id="only-semicolon"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), EXTRACTIONS)
def test_extract_sql(text: str, expected: str | None) -> None:
    assert extract_sql(text) == expected


def test_extract_then_guard_rejects_two_statements_in_a_fence() -> None:
    from ods.domain.sql_guard import SqlRejected

    sql = extract_sql("```sql\nSELECT 1;\nDROP TABLE sales;\n```")
    assert sql is not None
    with pytest.raises(SqlRejected, match="only one SQL statement"):
        guard_sql(sql, allowed_tables=["sales"])


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # a grouped result cut in no order: the LIMIT (and its OFFSET) keep arbitrary groups
        (
            "SELECT region, COUNT(*) AS n FROM sales GROUP BY region LIMIT 1",
            "SELECT region, COUNT(*) AS n FROM sales GROUP BY region",
        ),
        (
            "SELECT region FROM sales GROUP BY region LIMIT 2 OFFSET 1",
            "SELECT region FROM sales GROUP BY region",
        ),
        (
            "WITH t AS (SELECT * FROM sales) SELECT region, SUM(revenue) FROM t GROUP BY 1 LIMIT 3",
            "WITH t AS (SELECT * FROM sales) SELECT region, SUM(revenue) FROM t GROUP BY 1",
        ),
    ],
)
def test_a_limit_that_cuts_groups_in_no_order_is_dropped_with_a_note(sql: str, expected: str) -> None:
    kept, note = drop_unordered_group_limit(sql, "duckdb")

    assert kept == expected
    assert note is not None and "was dropped" in note and "ORDER BY" in note


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, COUNT(*) AS n FROM sales GROUP BY region ORDER BY n DESC LIMIT 3",  # top-N
        "SELECT * FROM sales LIMIT 5",  # a sample of rows, not of groups
        "SELECT region, COUNT(*) FROM sales GROUP BY region",  # no LIMIT
        "SELECT * FROM (SELECT region FROM sales GROUP BY region LIMIT 1) AS t",  # only the top level counts
        "SELEC region FROM",  # does not parse: the guard judges it
        "SELECT 1; DROP TABLE sales",  # two statements: the guard refuses them
    ],
)
def test_other_sql_is_left_as_the_model_wrote_it(sql: str) -> None:
    assert drop_unordered_group_limit(sql, "duckdb") == (sql, None)
