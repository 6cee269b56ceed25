"""The Text-to-SQL step of an answer: the model writes SQL, the guard checks it, the warehouse runs it
read-only; a statement the database refuses is shown to the model once so it can repair it."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ods.adapters.catalog import Catalog
from ods.adapters.models.llm import LLM
from ods.adapters.warehouse import QueryResult, Warehouse
from ods.domain.answering import Evidence, TableResult, summarise_table
from ods.domain.chat import ChatMessage, Usage
from ods.domain.copied_fields import copy_fields
from ods.domain.refs import parse_dataset_ref
from ods.domain.sql_guard import SqlRejected
from ods.domain.text_to_sql import (
    TableDescription,
    build_sql_messages,
    drop_unordered_group_limit,
    extract_sql,
)
from ods.errors import OdsError
from ods.factories import open_sql_database_warehouse, open_warehouse
from ods.settings import Settings
from ods.stages.answer.results import AnswerSource, Gathered, SqlRun

SQL_MAX_TOKENS = 200


def gather_sql(gathered: Gathered, outcome: tuple[SqlRun, Usage, list[int]]) -> None:
    """Add what :func:`run_sql` did to ``gathered``: the run, what it cost, and its result as source [1]."""
    sql_run, usage, version_ids = outcome
    gathered.sql_run = sql_run
    gathered.usage += usage
    gathered.notes.extend(f"SQL step: {note}" for note in sql_run.notes)
    if not sql_run.succeeded or sql_run.sql is None:
        gathered.notes.append(f"SQL step: {sql_run.error}")
        return
    dataset = ", ".join(sql_run.datasets)
    table = copy_fields(TableResult, sql_run, marker=1, dataset=dataset)
    gathered.tables.append(table)
    gathered.sources.append(
        AnswerSource(
            marker=1,
            kind="dataset",
            label=f"SQL over {dataset}",
            excerpt=sql_run.sql,
            dataset=dataset,
            dataset_version_id=version_ids[0] if len(version_ids) == 1 else None,
        )
    )
    gathered.evidence.append(Evidence(table.marker, summarise_table(table), 1.0))


def run_sql(
    settings: Settings,
    catalog: Catalog,
    model: LLM,
    question: str,
    datasets: list[str],
    history: Sequence[ChatMessage],
    database: bool = False,
) -> tuple[SqlRun, Usage, list[int]]:
    """Write SQL with the model, pass it through the guard, run it read-only with a timeout and a row cap.

    A statement the guard rejects is reported and never executed. A statement the database refuses
    (an unknown column, a type error) is shown to the model once with the error so it can repair it.
    """
    warehouse: Warehouse = (
        open_sql_database_warehouse(settings)
        if database
        else open_warehouse(settings, catalog, datasets or None)
    )
    try:
        tables = warehouse.tables()
        names = tuple(table.name for table in tables)
        version_ids = [] if database else _dataset_version_ids(catalog, tables)
        messages = build_sql_messages(question, tables, history)
        usage = Usage()
        started = time.perf_counter()
        sql_text: str | None = None
        for attempt in range(2):
            completion = model.complete(messages, max_tokens=SQL_MAX_TOKENS, temperature=0.0)
            usage += completion.usage
            sql_text = extract_sql(completion.text)
            if sql_text is None:
                return (
                    SqlRun(names, None, error="the model wrote no SQL statement", seconds=_since(started)),
                    usage,
                    version_ids,
                )
            sql_text, note = drop_unordered_group_limit(sql_text, warehouse.dialect)
            try:
                guarded = warehouse.guard(sql_text, max_rows=settings.warehouse.max_rows)
            except SqlRejected as rejected:
                return (
                    SqlRun(
                        names,
                        sql_text,
                        error=f"the SQL was rejected and not run: {rejected}",
                        seconds=_since(started),
                    ),
                    usage,
                    version_ids,
                )
            try:
                result = warehouse.run(guarded, timeout_s=settings.warehouse.timeout_s)
            except OdsError as failed:
                if attempt == 0:
                    messages = [
                        *messages,
                        ChatMessage("assistant", f"```sql\n{sql_text}\n```"),
                        ChatMessage("user", f"That query failed: {failed}. Write a corrected query."),
                    ]
                    continue
                return (
                    SqlRun(names, guarded.sql, error=f"the query failed: {failed}", seconds=_since(started)),
                    usage,
                    version_ids,
                )
            notes = () if note is None else (note,)
            return _sql_run(names, guarded.sql, result, started, notes), usage, version_ids
        raise AssertionError("unreachable: the loop returns on its last attempt")
    finally:
        warehouse.close()


def _sql_run(
    names: tuple[str, ...], sql: str, result: QueryResult, started: float, notes: tuple[str, ...]
) -> SqlRun:
    return SqlRun(
        datasets=names,
        sql=sql,
        columns=tuple(result.columns),
        rows=tuple(tuple(row) for row in result.rows),
        truncated=result.truncated,
        seconds=_since(started),
        notes=notes,
    )


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)


def _dataset_version_ids(catalog: Catalog, tables: Sequence[TableDescription]) -> list[int]:
    ids = []
    for table in tables:
        record = catalog.get_dataset_version(*parse_dataset_ref(table.dataset))
        ids.append(record.id)
    return ids
