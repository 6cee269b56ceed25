"""What every warehouse is: the protocol, the query result, the errors and the checks both run.

Both warehouses accept only a :class:`~ods.domain.sql_guard.GuardedQuery`, and check it again against their
own tables and dialect before running it: a hand-built ``GuardedQuery`` gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ods.adapters.warehouse.query_process import QueryLimits
from ods.domain.sql_guard import GuardedQuery
from ods.domain.text_to_sql import TableDescription
from ods.errors import OdsError

DEFAULT_MAX_ROWS = 1000


class WarehouseQueryError(OdsError):
    """The database refused or failed a query that passed the guard (unknown column, type error, ...)."""


class QueryTimeoutError(WarehouseQueryError):
    """A query ran longer than its time limit and was interrupted."""


class QueryLimitError(WarehouseQueryError):
    """A query needed more memory, temporary disk or result bytes than its limits allow, and was stopped."""


@dataclass(frozen=True)
class QueryResult:
    """Rows of one query: at most the guard's row cap; ``truncated`` when the guard's cap cut the result."""

    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    row_count: int
    truncated: bool
    seconds: float


@runtime_checkable
class Warehouse(Protocol):
    """Tables a question may query, and a way to run guarded SQL over them."""

    @property
    def dialect(self) -> str:
        """The sqlglot dialect to guard SQL for (``duckdb``, ``postgres``)."""
        ...

    def tables(self) -> list[TableDescription]:
        """The queryable tables, described for a Text-to-SQL prompt."""
        ...

    def guard(self, sql: str, *, max_rows: int | None = None) -> GuardedQuery:
        """``sql`` checked against these tables and this dialect (raises ``SqlRejected``)."""
        ...

    def run(self, guarded: GuardedQuery, *, timeout_s: float) -> QueryResult:
        """Run a guarded query, interrupting it after ``timeout_s`` (raises :class:`QueryTimeoutError`)."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


def check_guarded(guarded: object, timeout_s: float) -> GuardedQuery:
    if not isinstance(guarded, GuardedQuery):
        raise TypeError(
            f"a warehouse runs only a GuardedQuery (from guard_sql or Warehouse.guard), "
            f"got {type(guarded).__name__}"
        )
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return guarded


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def timeout_error(timeout_s: float, by: str = "") -> QueryTimeoutError:
    return QueryTimeoutError(
        f"the query ran longer than its limit of {timeout_s:g} s and was stopped{by}; "
        "ask for less (filter, aggregate) or raise ODS_WAREHOUSE__TIMEOUT_S"
    )


def too_large_error(limits: QueryLimits, rows: str) -> QueryLimitError:
    return QueryLimitError(
        f"the query's result passed its limit of {limits.max_result_bytes:,} bytes "
        f"(ODS_WAREHOUSE__MAX_RESULT_BYTES; {rows}) and was stopped; "
        "select fewer or narrower columns, or aggregate"
    )
