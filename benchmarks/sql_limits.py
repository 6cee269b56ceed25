"""Hostile Text-to-SQL statements against the warehouse limits: how each ends, how long it took against its
timeout, and how much memory it cost.

Issue 19 item 1: before the limits, ``SELECT repeat('x', 2000000000) FROM orders`` reached 4.1 GB before its
timeout, ``SELECT count(*) FROM (SELECT unnest(range(0, 2000000000)) FROM orders LIMIT 1)`` grew to 24 GB
and was killed by the kernel's OOM killer, and the statement timeout fired at 12.8-19.2 s for a 10 s limit.

Each statement runs in a fresh interpreter (``--one``) through the real ``DuckDBWarehouse`` with the
configured limits (default: the settings' defaults, 512 MB, 2 threads, 1024 MB temp, 10 MB result, 10 s),
over ``orders``: ORDERS rows with a 1,000-character note each, in a Parquet file. The query process is
started and answers ``SELECT 1`` before the clock starts. Printed per statement: the outcome (the error's
first words), seconds and their ratio to the timeout (target for statements stopped by the timeout: at most
1.10), the peak resident memory of the query process (its VmHWM, reset before the statement) and the peak of
the interpreter holding the warehouse above its resting size (reset the same way; see peak_memory.py).
Statements marked "unguarded" skip the guard and go straight to the query process, to show the limits hold
for SQL the guard never saw.

    .venv/bin/python benchmarks/sql_limits.py                      # the defaults (~1-2 min)
    .venv/bin/python benchmarks/sql_limits.py --timeout 2 --memory-mb 128 --temp-mb 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peak_memory import _kernel_peak, _reset_kernel_peak

REPO_ROOT = Path(__file__).resolve().parent.parent
QUADRUPLING = "WITH c0 AS (SELECT 'xxxxxxxxxx' AS s), {} SELECT length(s) FROM c14".format(  # noqa: S608
    ", ".join(f"c{i} AS (SELECT s || s || s || s AS s FROM c{i - 1})" for i in range(1, 15))  # noqa: S608
)
# (label, sql, guarded)
STATEMENTS: list[tuple[str, str, bool]] = [
    ("issue: repeat 2e9", "SELECT repeat('x', 2000000000) FROM orders", True),
    ("issue: unnest(range)", "SELECT count(*) FROM (SELECT unnest(range(0, 2000000000)) FROM orders LIMIT 1)", True),
    ("issue: repeat 2e9, unguarded", "SELECT repeat('x', 2000000000) FROM orders", False),
    ("issue: unnest(range), unguarded",
     "SELECT count(*) FROM (SELECT unnest(range(0, 2000000000)) FROM orders LIMIT 1)", False),
    ("repeat a column 10,000x", "SELECT length(repeat(note, 10000)) FROM orders", True),
    ("CTEs quadrupling a string", QUADRUPLING, True),
    ("string_agg over a cross join", "SELECT length(string_agg(a.note, ',')) FROM orders AS a, orders AS b", True),
    ("window over a cross join", "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY a.note || b.note) AS r "
     "FROM orders AS a, orders AS b)", True),
    ("1,000 rows of 9,000 chars", "SELECT repeat('x', 9000) AS filler FROM orders", True),
    ("3-way cross join count", "SELECT count(*) FROM orders AS a, orders AS b, orders AS c", True),
    ("slow string function", "SELECT max(damerau_levenshtein(repeat(note, 4), repeat(note, 4))) FROM orders", True),
]  # fmt: skip


def write_orders(folder: Path, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "orders.parquet"
    pq.write_table(
        pa.table({
            "id": list(range(rows)),
            "note": [chr(65 + i % 26) * 1000 for i in range(rows)],
            "amount": [float(i % 250) for i in range(rows)],
        }),
        path,
    )  # fmt: skip
    return path


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh interpreter: one statement through the warehouse (or its query process), measured."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import pyarrow.dataset as pads

    from ods.adapters.warehouse import DuckDBWarehouse
    from ods.adapters.warehouse.query_process import QueryLimits
    from ods.domain.text_to_sql import describe_table
    from ods.errors import OdsError

    _, sql, guarded = STATEMENTS[args.one]
    limits = QueryLimits(
        memory_limit_mb=args.memory_mb, threads=args.threads, max_temp_mb=args.temp_mb,
        max_result_bytes=args.result_bytes,
    )  # fmt: skip
    description = describe_table(
        "orders",
        source="benchmark",
        column_types=[("id", "BIGINT"), ("note", "VARCHAR"), ("amount", "DOUBLE")],
    )
    dataset = pads.dataset(args.data, format="parquet")
    with DuckDBWarehouse([(description, dataset)], limits=limits, max_rows=args.max_rows) as warehouse:
        warehouse.run(warehouse.guard("SELECT 1"), timeout_s=60)  # the query process is up
        _reset_kernel_peak()
        resting = _kernel_peak() or 0
        started = time.perf_counter()
        try:
            if guarded:
                result = warehouse.run(warehouse.guard(sql), timeout_s=args.timeout)
                outcome = f"{result.row_count} row(s)"
            else:
                raw = warehouse.query_process.query(sql, max_rows=args.max_rows, timeout_s=args.timeout)
                outcome = f"{raw.kind}: {raw.detail}" if raw.kind != "rows" else f"{len(raw.rows)} row(s)"
        except OdsError as error:
            outcome = f"{type(error).__name__}: {error}"
        seconds = time.perf_counter() - started
        ran = not outcome.startswith("SqlRejected")
        return {
            "outcome": outcome,
            "seconds": seconds,
            "query_peak": warehouse.query_process.peak_bytes if ran else None,
            "holder_peak": (_kernel_peak() or resting) - resting,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per statement (default 10)")
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temp-mb", type=int, default=1024)
    parser.add_argument("--result-bytes", type=int, default=10_000_000)
    parser.add_argument("--max-rows", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of orders (1 KB of text each)")
    parser.add_argument(
        "--only", type=int, action="append", help="run only statement N (0-based; repeatable)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args)))
        return
    with tempfile.TemporaryDirectory(prefix="ods-sql-limits-") as folder:
        data = write_orders(Path(folder), args.rows)
        print(
            f"orders: {args.rows:,} rows x 1,000 chars; limits: memory {args.memory_mb} MB, threads {args.threads}, "
            f"temp {args.temp_mb} MB, result {args.result_bytes:,} bytes, timeout {args.timeout:g} s\n"
        )
        print(f"{'statement':34} {'s':>6} {'/limit':>6} {'query MB':>8} {'holder MB':>9}  outcome")
        for index, (label, _, _) in enumerate(STATEMENTS):
            if args.only and index not in args.only:
                continue
            command = [
                sys.executable, __file__, "--one", str(index), "--data", str(data), "--timeout", str(args.timeout),
                "--memory-mb", str(args.memory_mb), "--threads", str(args.threads), "--temp-mb", str(args.temp_mb),
                "--result-bytes", str(args.result_bytes), "--max-rows", str(args.max_rows),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{label:34} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            query_mb = f"{figures['query_peak'] / 2**20:.0f}" if figures["query_peak"] else "-"
            outcome = figures["outcome"]
            print(
                f"{label:34} {figures['seconds']:6.2f} {figures['seconds'] / args.timeout:6.2f} {query_mb:>8} "
                f"{figures['holder_peak'] / 2**20:9.1f}  {outcome if len(outcome) <= 110 else outcome[:107] + '...'}"
            )


if __name__ == "__main__":
    main()
