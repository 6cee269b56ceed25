"""Issue 19: SQL that exhausts memory or outruns its timeout, against the real DuckDB query process.

Before the limits, ``SELECT repeat('x', 2000000000) FROM orders`` reached 4.1 GB and an ``unnest`` of
``range(0, 2000000000)`` 24 GB (the OOM killer took other processes with it). Here each hostile statement
runs with a 128 MB memory limit, through the real ``DuckDBWarehouse`` (guard first, then its query process)
and, for the statements the guard refuses, straight in the query process too, to show the limits hold even
for SQL the guard never saw. Each asserts the error a person reads and that the query process's peak
resident memory (its VmHWM, reset before each query) stays under :data:`PEAK_CAP`.

Wall times are not asserted here (benchmarks/sql_limits.py measures them against the timeout).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from ods.adapters.warehouse import DuckDBWarehouse, QueryLimitError, QueryTimeoutError, WarehouseQueryError
from ods.adapters.warehouse.query_process import HEADROOM_MB, DuckDBProcess, QueryLimits
from ods.domain.sql_guard import SqlRejected
from ods.domain.text_to_sql import describe_table

LIMITS = QueryLimits(memory_limit_mb=128, threads=2, max_temp_mb=64, max_result_bytes=1_000_000)
# The query process's imports and tables take ~170 MB resident; on top of that it may use DuckDB's memory
# limit plus the headroom its data segment is capped at.
PEAK_CAP = (200 + LIMITS.memory_limit_mb + HEADROOM_MB) * 1024 * 1024
ORDERS = 20_000  # rows of ``orders``: a 1,000-character note each (20 MB of text)
TIMEOUT_S = 2.0
# Each CTE quadruples a string: no function the guard could bound, 10 * 4**14 characters (2.7 GB) at the end.
QUADRUPLING = "WITH c0 AS (SELECT 'xxxxxxxxxx' AS s), {} SELECT length(s) FROM c14".format(  # noqa: S608
    ", ".join(f"c{i} AS (SELECT s || s || s || s AS s FROM c{i - 1})" for i in range(1, 15))  # noqa: S608
)


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> pads.Dataset:
    path = tmp_path_factory.mktemp("orders") / "orders.parquet"
    pq.write_table(
        pa.table({
            "id": list(range(ORDERS)),
            "note": [chr(65 + i % 26) * 1000 for i in range(ORDERS)],
            "amount": [float(i % 250) for i in range(ORDERS)],
        }),
        path,
    )  # fmt: skip
    return pads.dataset(str(path), format="parquet")


@pytest.fixture(scope="module")
def warehouse(orders: pads.Dataset) -> Iterator[DuckDBWarehouse]:
    description = describe_table(
        "orders", source="test", column_types=[("id", "BIGINT"), ("note", "VARCHAR"), ("amount", "DOUBLE")]
    )
    with DuckDBWarehouse([(description, orders)], limits=LIMITS, max_rows=1000) as opened:
        yield opened


@pytest.fixture(scope="module")
def process(orders: pads.Dataset) -> Iterator[DuckDBProcess]:
    """The query process alone: SQL reaches it without the guard."""
    with DuckDBProcess([("orders", orders)], LIMITS) as started:
        yield started


def parent_peak_reset() -> int | None:
    """Reset this process's peak resident size and return the current one (Linux), else None."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _vm("VmRSS")
    except OSError:
        return None


def _vm(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), flags=re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


# (sql, exception, fragment of its message): the statements, their relatives, and statements the
# guard passes that only the limits stop.
HOSTILE = [
    pytest.param(
        "SELECT repeat('x', 2000000000) FROM orders", SqlRejected,
        "repeat() may build at most 10,000 characters, but its count is 2,000,000,000", id="repeat-two-billion",
    ),
    pytest.param(
        "SELECT count(*) FROM (SELECT unnest(range(0, 2000000000)) FROM orders LIMIT 1)", SqlRejected,
        "range() is not allowed", id="unnest-of-range",
    ),
    pytest.param(
        "SELECT lpad(note, 100000000, 'x') FROM orders", SqlRejected, "lpad() may build at most 10,000",
        id="lpad-huge",
    ),
    pytest.param(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", SqlRejected,
        "WITH RECURSIVE", id="recursive-cte",
    ),
    pytest.param(
        "SELECT length(repeat(note, 10000)) FROM orders", QueryLimitError,
        "more memory than its limit of 128 MB (ODS_WAREHOUSE__MEMORY_LIMIT_MB)", id="repeat-a-column",
    ),
    pytest.param(
        QUADRUPLING, QueryLimitError, "more memory than its limit of 128 MB", id="quadrupling-ctes",
    ),
    pytest.param(
        "SELECT length(string_agg(a.note, ',')) FROM orders AS a, orders AS b", QueryLimitError,
        "more memory than its limit of 128 MB", id="aggregate-of-a-cross-join",
    ),
    pytest.param(
        "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY a.note || b.note) AS r "
        "FROM orders AS a, orders AS b)", QueryLimitError,
        "more temporary disk than its limit of 64 MB (ODS_WAREHOUSE__MAX_TEMP_MB)", id="sort-spills-past-temp",
    ),
    pytest.param(
        "SELECT repeat('x', 9000) AS filler FROM orders", QueryLimitError,
        "passed its limit of 1,000,000 bytes (ODS_WAREHOUSE__MAX_RESULT_BYTES; 111 row(s) fitted",
        id="wide-result",
    ),
    pytest.param(
        "SELECT count(*) FROM orders AS a, orders AS b, orders AS c", QueryTimeoutError,
        "longer than its limit of 2 s", id="cross-join",
    ),
    pytest.param(
        # CPU-bound: the timeout stops it, or on a slow machine the memory cap first; either way it stops.
        "SELECT max(damerau_levenshtein(repeat(note, 4), repeat(note, 4))) FROM orders",
        (QueryTimeoutError, QueryLimitError), "ODS_WAREHOUSE__", id="slow-string-function",
    ),
]  # fmt: skip


# The sort must reach the temp-disk cap before any timeout, however busy the machine is.
SLOW_LIMIT_S = {"sort-spills-past-temp": 120.0}


@pytest.mark.parametrize(("sql", "error", "fragment"), HOSTILE)
def test_hostile_sql_stops_with_a_clear_error_and_bounded_memory(
    warehouse: DuckDBWarehouse,
    sql: str,
    error: type[Exception] | tuple[type[Exception], ...],
    fragment: str,
    request: pytest.FixtureRequest,
) -> None:
    resting = parent_peak_reset()
    timeout_s = SLOW_LIMIT_S.get(request.node.callspec.id, TIMEOUT_S)

    with pytest.raises(error) as caught:
        warehouse.run(warehouse.guard(sql), timeout_s=timeout_s)

    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    peak = warehouse.query_process.peak_bytes
    if error is not SqlRejected:
        assert peak is not None and peak < PEAK_CAP, f"query process peaked at {peak / 2**20:.0f} MB"
    if resting is not None:  # this process only ever holds the capped result
        assert _vm("VmHWM") - resting < 64 * 1024 * 1024
    # The warehouse answers the next question (in a fresh query process where the last one was stopped).
    assert warehouse.run(warehouse.guard("SELECT count(*) FROM orders"), timeout_s=30).rows == [(ORDERS,)]


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT repeat('x', 2000000000) FROM orders", id="repeat-two-billion"),
        pytest.param("SELECT count(*) FROM (SELECT unnest(range(0, 2000000000)) FROM orders LIMIT 1)", id="range"),
        pytest.param("SELECT length(repeat(note, 100000)) FROM orders", id="repeat-a-column"),
    ],
)  # fmt: skip
def test_the_limits_hold_without_the_guard(process: DuckDBProcess, sql: str) -> None:
    outcome = process.query(sql, max_rows=1000, timeout_s=TIMEOUT_S)

    assert outcome.kind == "memory"
    assert "Out of Memory" in outcome.detail
    assert outcome.peak_bytes is not None and outcome.peak_bytes < PEAK_CAP
    assert process.query("SELECT count(*) FROM orders", max_rows=1, timeout_s=30).rows == [(ORDERS,)]


def test_a_query_process_that_does_not_answer_is_killed(process: DuckDBProcess) -> None:
    """DuckDB looks for an interrupt only at certain points; whatever holds the query process past them, the
    parent kills it at the timeout plus 5 % and the next query gets a fresh one. Here the process is
    stopped (SIGSTOP), so it cannot answer at all."""
    assert process.query("SELECT 1", max_rows=1, timeout_s=30).rows == [(1,)]
    started, stopped = process.workers_started, process.pid
    assert stopped is not None
    os.kill(stopped, signal.SIGSTOP)

    outcome = process.query("SELECT count(*) FROM orders", max_rows=1, timeout_s=0.5)

    assert outcome.kind == "timeout"
    assert "did not stop by itself and was killed" in outcome.detail
    assert process.workers_started == started + 1 and process.pid != stopped
    assert process.query("SELECT count(*) FROM orders", max_rows=1, timeout_s=30).rows == [(ORDERS,)]


def test_a_query_process_killed_while_idle_is_replaced(process: DuckDBProcess) -> None:
    assert process.query("SELECT 1", max_rows=1, timeout_s=30).rows == [(1,)]
    killed = process.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    os.waitid(os.P_PID, killed, os.WEXITED | os.WNOWAIT)  # dead; left for the warehouse to reap

    outcome = process.query("SELECT count(*) FROM orders", max_rows=1, timeout_s=30)
    assert outcome.rows == [(ORDERS,)], outcome
    assert process.pid != killed


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="memory_limit_mb"):
        QueryLimits(memory_limit_mb=0)
    with pytest.raises(ValueError, match="max_temp_mb"):
        QueryLimits(max_temp_mb=-1)


def test_a_dataset_gone_from_the_store_is_reported(tmp_path: Path) -> None:
    gone = tmp_path / "gone.parquet"
    pq.write_table(pa.table({"x": [1]}), gone)
    dataset = pads.dataset(str(gone), format="parquet")
    gone.unlink()
    description = describe_table("gone", source="test", column_types=[("x", "BIGINT")])
    with (
        DuckDBWarehouse([(description, dataset)], limits=LIMITS) as broken,
        pytest.raises(WarehouseQueryError, match=r"DuckDB could not run the query: .*gone\.parquet"),
    ):
        broken.run(broken.guard("SELECT * FROM gone"), timeout_s=10)
