"""DuckDB queries in a process of their own, under hard memory, thread, disk, size and time limits.

Text-to-SQL runs SQL a model wrote, or a user steered. The guard (``ods.domain.sql_guard``) refuses what it
can see is dangerous, but no static check bounds every way a query grows, and DuckDB's own limits do not
cover everything either: ``memory_limit`` bounds its buffer pool (hash tables, sorts, aggregate states) but
not the strings a function builds vector by vector (``repeat(note, 10000)`` over 1 KB notes passed 2.7 GB
with ``memory_limit`` at 256 MB), and DuckDB honours an interrupt only at certain points, so a query stuck in
one huge allocation runs on past its timeout (``repeat('x', 2000000000)`` stopped after 12.6 s for a 3 s
limit; issue 19 saw 12.8-19.2 s for 10 s).

So a warehouse runs its queries in one worker process (``python -c``, as the parser and validation workers
are) that:

* caps its data segment (``RLIMIT_DATA``) at what its imports and tables took, plus the memory limit, plus
  :data:`HEADROOM_MB` for what lives outside DuckDB's buffer pool (built strings, the fetched result): an
  allocation past it fails inside DuckDB as an Out of Memory error and the worker lives on. Not
  ``RLIMIT_AS``: DuckDB and Arrow reserve address space they never touch, and with the address space
  capped at imports + 1 GB an ordinary GROUP BY over 3 million rows failed;
* opens an in-memory DuckDB with ``memory_limit``, ``threads`` and a private ``temp_directory`` capped by
  ``max_temp_directory_size`` (or no spilling at all), registers the tables and locks the configuration
  (:func:`connect_hardened`);
* runs each query with a watcher thread that interrupts it at its timeout, and again every 10 ms until it
  stops, fetching rows in batches up to the row cap and the result-byte cap.

The parent waits for the answer until the timeout plus 5 % (:data:`LATE_FRACTION`); a worker that has not
answered by then is killed, and the next query starts a fresh one. The worker exits when its parent does
(the end of its stdin).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ods.adapters.closing import Closeable
from ods.adapters.workers.pipes import READY, ParentLink, WorkerProcess
from ods.errors import OdsError

if TYPE_CHECKING:
    import duckdb

HEADROOM_MB = 256
"""Memory the query process may use beyond DuckDB's ``memory_limit``: strings built outside the buffer
pool, Arrow's scan buffers, the fetched rows and their pickled reply."""
LATE_FRACTION = 0.05
"""How far past its timeout the parent waits for a query before it kills the query process."""
_INTERRUPT_EVERY_S = 0.01
_FETCH_ROWS = 256
_START_S = 60.0
_WORKER_COMMAND = "from ods.adapters.warehouse.query_process import serve; serve()"
# Applied in this order once the relations are registered; lock_configuration must come last.
_DUCKDB_HARDENING = (
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


class DuckDBProcessError(OdsError):
    """The query process could not be started (a broken environment or unreadable tables)."""


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use: memory (MB), threads, temporary disk (MB, 0: no spilling), result bytes."""

    memory_limit_mb: int = 512
    threads: int = 2
    max_temp_mb: int = 1024
    max_result_bytes: int = 10_000_000

    def __post_init__(self) -> None:
        for name in ("memory_limit_mb", "threads", "max_result_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.max_temp_mb, bool)
            or not isinstance(self.max_temp_mb, int)
            or self.max_temp_mb < 0
        ):
            raise ValueError(
                f"max_temp_mb must be 0 (no spilling) or a positive integer, got {self.max_temp_mb!r}"
            )


OutcomeKind = Literal["rows", "timeout", "memory", "temp", "too_large", "error", "died"]


@dataclass(frozen=True)
class QueryOutcome:
    """How one query ended: its rows, or why it stopped (``detail`` is the database's or the process's word).

    ``result_bytes`` counts the values fetched (text and binary by length, other values 8 bytes);
    ``peak_bytes`` is the query process's peak resident memory during the query, where it could be read.
    """

    kind: OutcomeKind
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0
    result_bytes: int = 0
    peak_bytes: int | None = None


def connect_hardened(
    tables: Sequence[tuple[str, Any]], limits: QueryLimits, *, temp_directory: str | None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding ``tables`` (name, Arrow dataset or table), with ``limits`` applied and
    its configuration locked: no file or network access, no extensions, no replacement scans.

    ``temp_directory`` is where DuckDB may spill, up to ``limits.max_temp_mb``; None disables spilling.
    """
    import duckdb

    spill = temp_directory is not None and limits.max_temp_mb > 0
    connection = duckdb.connect(
        ":memory:",
        config={
            "threads": limits.threads,
            "memory_limit": f"{limits.memory_limit_mb}MB",
            "temp_directory": temp_directory if spill and temp_directory else "",
            "max_temp_directory_size": f"{limits.max_temp_mb if spill else 0}MB",
        },
    )
    try:
        for name, table in tables:
            connection.register(name, table)
        for statement in _DUCKDB_HARDENING:
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection


def run_query(
    connection: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int, timeout_s: float, max_result_bytes: int
) -> QueryOutcome:
    """Run ``sql`` on ``connection`` in this process, interrupted at ``timeout_s`` (then every 10 ms until
    it stops), fetching at most ``max_rows`` rows and ``max_result_bytes`` bytes of values."""
    import duckdb

    done = threading.Event()
    interrupted = threading.Event()

    def interrupt_when_late() -> None:
        if done.wait(timeout_s):
            return
        interrupted.set()
        # One interrupt can land between two of DuckDB's checks and be lost; keep asking until it stops.
        while not done.is_set():
            connection.interrupt()
            done.wait(_INTERRUPT_EVERY_S)

    watcher = threading.Thread(target=interrupt_when_late, name="duckdb-timeout", daemon=True)
    started = time.perf_counter()
    watcher.start()
    try:
        cursor = connection.execute(sql)
        columns = tuple(column[0] for column in cursor.description or ())
        rows: list[tuple[Any, ...]] = []
        size = 0
        while len(rows) < max_rows:
            batch = cursor.fetchmany(min(_FETCH_ROWS, max_rows - len(rows)))
            if not batch:
                break
            for row in batch:
                size += row_bytes(row)
                if size > max_result_bytes:
                    return QueryOutcome(
                        "too_large",
                        columns,
                        detail=f"{len(rows)} row(s) fitted",
                        seconds=time.perf_counter() - started,
                        result_bytes=size,
                    )
                rows.append(tuple(row))
        return QueryOutcome("rows", columns, rows, seconds=time.perf_counter() - started, result_bytes=size)
    except duckdb.Error as error:
        seconds = time.perf_counter() - started
        text = _first_line(error)
        if interrupted.is_set():
            return QueryOutcome("timeout", detail=text, seconds=seconds)
        if isinstance(error, duckdb.OutOfMemoryException):
            spilled = "offload" in text or "temp" in text.lower()
            return QueryOutcome("temp" if spilled else "memory", detail=text, seconds=seconds)
        return QueryOutcome("error", detail=text, seconds=seconds)
    except MemoryError:
        return QueryOutcome("memory", detail="MemoryError", seconds=time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - a value Python cannot convert: this query's failure, not the process's
        detail = f"{type(error).__name__}: {_first_line(error)}"
        return QueryOutcome("error", detail=detail, seconds=time.perf_counter() - started)
    finally:
        done.set()
        watcher.join()


def row_bytes(row: Sequence[Any]) -> int:
    """Bytes of values one fetched row holds (what ``max_result_bytes`` counts)."""
    return sum(_value_bytes(value) for value in row)


def _value_bytes(value: Any) -> int:
    """Bytes a fetched value holds: text by its UTF-8 length, binary by length, containers summed, 8 else."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list | tuple):
        return 8 + sum(_value_bytes(item) for item in value)
    if isinstance(value, dict):
        return 8 + sum(_value_bytes(key) + _value_bytes(item) for key, item in value.items())
    return 8


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DuckDBProcess(Closeable):
    """One query process over ``tables`` (name, pyarrow dataset): started at once, so its start-up (about
    half a second) overlaps the caller's own work; queries run one at a time.

    Use as a context manager, or call :meth:`close`: it stops the process and removes its temporary
    directory.
    """

    def __init__(self, tables: Sequence[tuple[str, Any]], limits: QueryLimits) -> None:
        self.limits = limits
        self._tables = list(tables)
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        self._temp_directory: str | None = None
        self.workers_started = 0
        self.peak_bytes: int | None = None  # of the last query, where it could be read
        with self._lock:
            self._spawn()

    @property
    def pid(self) -> int | None:
        """The query process's id; None after a kill, before the next query starts a fresh one."""
        return self._worker.pid if self._worker is not None else None

    def query(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryOutcome:
        """Run ``sql``; the outcome says how it ended. Raises :class:`DuckDBProcessError` only when the
        process cannot start."""
        request = (sql, max_rows, timeout_s, self.limits.max_result_bytes)
        with self._lock:
            worker = self._ensure_ready()
            try:
                worker.send(request)
            except OSError:  # the idle process died (killed from outside): start another for this query
                self._stop()
                worker = self._ensure_ready()
                worker.send(request)
            started = time.perf_counter()
            try:
                outcome: QueryOutcome | None = worker.receive(timeout_s * (1 + LATE_FRACTION))
            except TimeoutError:
                self.peak_bytes = _peak_of(worker.pid)
                self._stop()
                seconds = time.perf_counter() - started
                self._spawn()  # the next query finds a fresh process started
                return QueryOutcome(
                    "timeout",
                    detail=f"the query process did not stop by itself and was killed after {seconds:.2f} s",
                    seconds=seconds,
                    peak_bytes=self.peak_bytes,
                )
            if outcome is None:
                how = worker.exit_description()
                self.peak_bytes = None
                self._spawn()
                return QueryOutcome(
                    "died", detail=f"the query process {how}", seconds=time.perf_counter() - started
                )
            self.peak_bytes = outcome.peak_bytes
            if outcome.kind in ("memory", "temp"):
                # DuckDB's allocator keeps what it mapped up to the cap, so the next query there could fail
                # for want of memory the failed one took; a fresh process starts now, before it is needed.
                self._spawn()
            return outcome

    def close(self) -> None:
        """Stop the query process and remove its temporary directory. The process is killed: it holds
        nothing to save, and one still starting would otherwise be waited for."""
        with self._lock:
            self._stop()
            if self._temp_directory is not None:
                shutil.rmtree(self._temp_directory, ignore_errors=True)
                self._temp_directory = None

    def _spawn(self) -> None:
        self._stop()
        if self.limits.max_temp_mb > 0:
            if self._temp_directory is not None:  # a killed process's spill files go with it
                shutil.rmtree(self._temp_directory, ignore_errors=True)
            self._temp_directory = tempfile.mkdtemp(prefix="ods-duckdb-")
        worker = WorkerProcess(_WORKER_COMMAND)
        weakref.finalize(self, _discard, worker, self._temp_directory)
        self.workers_started += 1
        self._worker = worker
        worker.send((self._tables, self.limits, self._temp_directory))

    def _ensure_ready(self) -> WorkerProcess:
        if self._worker is None or not self._worker.running:
            self._spawn()
        worker = self._worker
        assert worker is not None
        answer = worker.start_reply(_START_S) or ("failed", f"no answer within {_START_S:g} s")
        if answer != READY:
            self._stop()
            raise DuckDBProcessError(
                f"the DuckDB query process ({sys.executable}) could not start: {answer[-1]}; "
                "check that the datasets are readable and the environment has duckdb and pyarrow"
            )
        return worker

    def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()


def _discard(worker: WorkerProcess, temp_directory: str | None) -> None:
    """A process dropped without close() leaves no orphan and no spill files."""
    worker.kill()
    if temp_directory is not None:
        shutil.rmtree(temp_directory, ignore_errors=True)


_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", flags=re.MULTILINE)


def _peak_of(pid: int | str) -> int | None:
    """Peak resident bytes of process ``pid`` (``self`` for this one); None where /proc lacks it."""
    with contextlib.suppress(OSError):
        found = _HWM.search(Path(f"/proc/{pid}/status").read_text())
        if found:
            return int(found.group(1)) * 1024
    return None


# --- the worker side -------------------------------------------------------------------------------------


def serve() -> None:
    """Worker main loop: a (tables, limits, temp directory) frame, then (sql, rows, timeout, bytes) frames."""
    parent = ParentLink()
    config = parent.receive()
    if config is None:
        return
    try:
        # DuckDB recognises an unpickled Arrow dataset only once pyarrow.dataset is loaded.
        import pyarrow
        import pyarrow.dataset

        tables, limits, temp_directory = config
        pyarrow.set_cpu_count(limits.threads)
        _limit_data_segment(limits.memory_limit_mb + HEADROOM_MB)
        connection = connect_hardened(tables, limits, temp_directory=temp_directory)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
        parent.send(("failed", f"{type(error).__name__}: {_first_line(error)}"))
        return
    parent.send(READY)
    while (request := parent.receive()) is not None:
        sql, max_rows, timeout_s, max_result_bytes = request
        _reset_peak()
        outcome = run_query(
            connection, sql, max_rows=max_rows, timeout_s=timeout_s, max_result_bytes=max_result_bytes
        )
        outcome = replace(outcome, peak_bytes=_peak_of("self"))
        try:
            parent.send(outcome)
        except MemoryError:
            outcome = QueryOutcome("memory", detail="MemoryError", peak_bytes=outcome.peak_bytes)
            parent.send(outcome)
        if outcome.kind == "memory" and outcome.detail == "MemoryError":
            return


def _limit_data_segment(memory_mb: int) -> None:
    """Cap the data segment at what is allocated now plus ``memory_mb`` (Linux; elsewhere no cap)."""
    import resource

    try:
        allocated = int(Path("/proc/self/statm").read_text().split()[5]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return
    limit = allocated + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _reset_peak() -> None:
    """Start this process's peak resident size afresh (Linux >= 4.0), so each query reports its own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
