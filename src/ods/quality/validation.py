"""Great Expectations validation of a cleaned frame against the expectations of a dataset spec.

Validation runs once with the cheap SUMMARY result format (a fraction of a second on a million rows).
Only when it fails are the failed column expectations run again with COMPLETE results, to find the exact
rows that broke them: those rows go to quarantine.

GE runs in a worker process of its own (one per process, reused): importing it takes ~2 s of one core
(scipy, altair, ...), which ``start_validation_worker()`` lets overlap the caller's reading and cleaning
instead of adding to them, and its memory stays out of the flow's process. The worker gets only the
columns the expectations name (pickled, ~60 MB and ~50 ms per million rows) and sends back outcomes and
failing row positions.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ods.adapters.workers.pipes import READY, ParentLink, WorkerProcess
from ods.domain.dataset_spec import (
    BetweenExpectation,
    ColumnTypeExpectation,
    Expectation,
    InSetExpectation,
    NotNullExpectation,
    RegexExpectation,
    RowCountExpectation,
    UniqueExpectation,
    expectation_type_problem,
)
from ods.domain.profiling import logical_type
from ods.errors import OdsError

_WORKER_COMMAND = "from ods.quality.validation import serve_validation_requests; serve_validation_requests()"
_WORKER_START_S = 180.0


class ValidationWorkerError(OdsError):
    """The Great Expectations worker process could not start or died while validating."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, shaped for the dataset card and the catalog."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: Any
    details: str

    def as_row(self) -> dict[str, Any]:
        """A flat, JSON-serialisable row for artifacts and the catalog."""
        return {
            "expectation": self.expectation,
            "column": self.column,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": None
            if self.unexpected_percent is None
            else round(self.unexpected_percent, 4),
            "observed": self.observed,
            "details": self.details,
        }


@dataclass(frozen=True)
class ValidationReport:
    """All expectation outcomes and the positions of the rows that failed any row-level expectation."""

    success: bool
    outcomes: list[ExpectationOutcome]
    failing_rows: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # "waiting for worker", "validating"

    @property
    def failed(self) -> list[ExpectationOutcome]:
        """Outcomes that did not pass."""
        return [outcome for outcome in self.outcomes if not outcome.success]

    def summary(self) -> str:
        """One line per failed expectation, for error messages."""
        return "; ".join(
            f"{outcome.expectation}({outcome.column or 'table'}): {outcome.details}"
            for outcome in self.failed
        )


def _gx_view(frame: pd.DataFrame, expectations: tuple[Expectation, ...] | list[Expectation]) -> pd.DataFrame:
    """The part of ``frame`` GE needs: only the columns expectations name, Arrow dates as datetime64.

    GE hashes the whole frame to identify each batch and evaluates some expectations value by value;
    Arrow-backed and nullable columns make both go through Python per value (seconds per million rows).
    So GE gets numpy columns (dates as datetime64, numbers as float64 with NaN) and
    only the columns it checks. Values are unchanged, so outcomes and failing row positions are too.
    """
    names = list(dict.fromkeys(c for e in expectations if (c := _column_of(e)) is not None)) or list(
        frame.columns[:1]
    )
    columns = {}
    for name in names:
        series = frame[name]
        if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_date(series.dtype.pyarrow_dtype):
            days = pa.array(series.array)
            series = pd.Series(
                pc.cast(days, pa.timestamp("ms")).to_numpy(zero_copy_only=False), index=series.index
            )
        elif logical_type(series) in ("int", "float"):
            series = pd.Series(series.to_numpy(dtype="float64", na_value=np.nan), index=series.index)
        columns[name] = series
    return pd.DataFrame(columns, index=frame.index, copy=False)


def _bound(value: Any, series: pd.Series) -> Any:
    if value is not None and pd.api.types.is_datetime64_any_dtype(series.dtype):
        return pd.Timestamp(value)
    return value


def _to_gx(expectation: Expectation, view: pd.DataFrame) -> Any:
    import great_expectations as gx

    params = expectation.params
    if isinstance(params, NotNullExpectation):
        return gx.expectations.ExpectColumnValuesToNotBeNull(column=params.column, mostly=params.mostly)
    if isinstance(params, UniqueExpectation):
        return gx.expectations.ExpectColumnValuesToBeUnique(column=params.column, mostly=params.mostly)
    if isinstance(params, BetweenExpectation):
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=params.column,
            min_value=_bound(params.min, view[params.column]),
            max_value=_bound(params.max, view[params.column]),
            mostly=params.mostly,
        )
    if isinstance(params, InSetExpectation):
        return gx.expectations.ExpectColumnValuesToBeInSet(
            column=params.column, value_set=list(params.values), mostly=params.mostly
        )
    if isinstance(params, RegexExpectation):
        return gx.expectations.ExpectColumnValuesToMatchRegex(
            column=params.column, regex=params.pattern, mostly=params.mostly
        )
    if isinstance(params, RowCountExpectation):
        return gx.expectations.ExpectTableRowCountToBeBetween(min_value=params.min, max_value=params.max)
    if isinstance(params, ColumnTypeExpectation):
        return None  # GE 1.x misreads pandas extension dtypes with nulls: checked by logical_type()
    raise TypeError(f"unsupported expectation {expectation.name!r}")


def _column_of(expectation: Expectation) -> str | None:
    return getattr(expectation.params, "column", None)


def _details(result: dict[str, Any], success: bool) -> str:
    if "unexpected_count" in result and result.get("unexpected_count") is not None:
        count = result["unexpected_count"]
        examples = result.get("partial_unexpected_list") or []
        shown = ", ".join(repr(value) for value in examples[:5])
        text = f"{count} unexpected value(s)"
        return text + (f", e.g. {shown}" if shown and not success else "")
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    return "passed" if success else "failed"


class _Validator:
    """One ephemeral GE context with a pandas datasource, built once in the worker process and reused by
    every validation it serves, one at a time. (GE's execution engine keeps the last batch it loaded, one
    view of a frame, until the next validation replaces it.)"""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        self._gx = gx
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self._context.data_sources.add_pandas("ods")
        self._batch_definition = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe(
            "all"
        )

    def batch(self, frame: pd.DataFrame) -> _Batch:
        """A batch of ``frame``: GE loads (and fingerprints) the frame once, however often it runs."""
        from great_expectations.validator.v1_validator import Validator as V1Validator

        validator = V1Validator(
            batch_definition=self._batch_definition, batch_parameters={"dataframe": frame}
        )
        return _Batch(self, validator)

    def run(self, validator: Any, expectations: list[Any], result_format: Any) -> list[Any]:
        """Validate and return the results in the order of ``expectations`` (GE reorders them)."""
        fresh = [copy.copy(expectation) for expectation in expectations]
        suite = self._gx.ExpectationSuite(name=f"suite-{uuid.uuid4().hex}", expectations=fresh)
        suite = self._context.suites.add(suite)  # registering the suite gives every expectation an id
        try:
            ids = [expectation.id for expectation in suite.expectations]
            validator.result_format = result_format
            by_id = {
                item.expectation_config.id: item
                for item in validator.validate_expectation_suite(suite).results
            }
        finally:
            self._context.suites.delete(suite.name)
        return [by_id[expectation_id] for expectation_id in ids]


@dataclass(frozen=True)
class _Batch:
    owner: _Validator
    validator: Any

    def run(self, expectations: list[Any], result_format: Any) -> list[Any]:
        return self.owner.run(self.validator, expectations, result_format)


def _check_column_type(frame: pd.DataFrame, expectation: Expectation) -> ExpectationOutcome:
    params = expectation.params
    assert isinstance(params, ColumnTypeExpectation)
    observed = logical_type(frame[params.column])
    return ExpectationOutcome(
        expectation=expectation.name,
        column=params.column,
        success=observed == params.type,
        unexpected_count=None,
        unexpected_percent=None,
        observed=observed,
        details=f"expected {params.type}, observed {observed} ({frame[params.column].dtype})",
    )


def _type_mismatch(frame: pd.DataFrame, expectation: Expectation) -> ExpectationOutcome | None:
    """A failed outcome naming the column's type and the ``coerce`` step to add, when ``expectation``
    cannot be checked on the column as cleaning left it (``between`` with numbers on text): reported
    instead of GE's failure, which no row can be blamed for and which would quarantine nothing."""
    column = _column_of(expectation)
    if column is None:
        return None
    observed = logical_type(frame[column])
    problem = expectation_type_problem(expectation, observed)
    if problem is None:
        return None
    return ExpectationOutcome(
        expectation=expectation.name,
        column=column,
        success=False,
        unexpected_count=None,
        unexpected_percent=None,
        observed=observed,
        details=problem,
    )


def validate_frame(
    frame: pd.DataFrame, expectations: tuple[Expectation, ...] | list[Expectation]
) -> ValidationReport:
    """Validate ``frame`` and locate the rows (positions) behind failed expectations.

    Column types are checked here, and so are expectations the column's type cannot meet (reported as
    such); every other expectation runs with Great Expectations in the worker.
    """
    if not expectations:
        return ValidationReport(success=True, outcomes=[])
    frame = frame.reset_index(drop=True)
    missing = sorted({c for e in expectations if (c := _column_of(e)) is not None and c not in frame.columns})
    if missing:
        from ods.domain.dataset_spec import DatasetSpecError

        raise DatasetSpecError(
            f"expectations name column(s) {', '.join(map(repr, missing))} that the cleaned data does not have "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    mismatched = {
        index: outcome
        for index, expectation in enumerate(expectations)
        if (outcome := _type_mismatch(frame, expectation)) is not None
    }
    checked = [
        e
        for index, e in enumerate(expectations)
        if index not in mismatched and not isinstance(e.params, ColumnTypeExpectation)
    ]
    checked_outcomes: list[ExpectationOutcome] = []
    failing: list[int] = []
    seconds: dict[str, float] = {}
    if checked:
        checked_outcomes, failing, seconds = _worker().validate(_gx_view(frame, checked), checked)
    by_ge = iter(checked_outcomes)
    outcomes = [
        mismatched[index]
        if index in mismatched
        else _check_column_type(frame, e)
        if isinstance(e.params, ColumnTypeExpectation)
        else next(by_ge)
        for index, e in enumerate(expectations)
    ]
    success = all(outcome.success for outcome in outcomes)
    return ValidationReport(success=success, outcomes=outcomes, failing_rows=failing, seconds=seconds)


def start_validation_worker() -> None:
    """Start the Great Expectations worker now, without waiting for it (it is started on first use anyway)."""
    _worker().start()


def validation_worker_pid() -> int | None:
    """The process id of this process's Great Expectations worker, None when none is running."""
    with _WORKER_LOCK:
        return _WORKER[0].pid if _WORKER else None


def _validate_with_ge(
    shared: _Validator, view: pd.DataFrame, expectations: list[Expectation]
) -> tuple[list[ExpectationOutcome], list[int]]:
    """In the worker: run ``expectations`` (none a column-type check) over ``view``."""
    gx_expectations = [_to_gx(expectation, view) for expectation in expectations]
    batch = shared.batch(view)
    results = batch.run(gx_expectations, "SUMMARY")
    outcomes = []
    rerun: list[Any] = []
    for expectation, gx_expectation, item in zip(expectations, gx_expectations, results, strict=True):
        details = item.result or {}
        if item.exception_info and item.exception_info.get("raised_exception"):
            message = str(item.exception_info.get("exception_message", "raised an exception")).splitlines()[0]
            details = {"observed_value": message}
        outcome = ExpectationOutcome(
            expectation=expectation.name,
            column=_column_of(expectation),
            success=bool(item.success),
            unexpected_count=details.get("unexpected_count"),
            unexpected_percent=details.get("unexpected_percent"),
            observed=details.get("observed_value"),
            details=_details(details, bool(item.success)),
        )
        outcomes.append(outcome)
        if not item.success and outcome.column is not None and outcome.unexpected_count:
            rerun.append(gx_expectation)
    failing: set[int] = set()
    if rerun:
        complete = batch.run(rerun, {"result_format": "COMPLETE", "return_unexpected_index_query": False})
        for item in complete:
            failing.update(int(index) for index in (item.result or {}).get("unexpected_index_list") or [])
    return outcomes, sorted(failing)


# --- the worker process ----------------------------------------------------------------------------------


class _ValidationWorker:
    """The process that runs Great Expectations for this process; calls are serialised.

    A worker that died (killed, out of memory) is replaced by a fresh one on the next call; the call it
    died in raises ``ValidationWorkerError``.
    """

    def __init__(self) -> None:
        self._process: WorkerProcess | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.running else None

    def start(self) -> None:
        with self._lock:
            self._ensure_started()

    def validate(
        self, view: pd.DataFrame, expectations: list[Expectation]
    ) -> tuple[list[ExpectationOutcome], list[int], dict[str, float]]:
        with self._lock:
            started = time.perf_counter()
            worker = self._ensure_ready()
            ready = time.perf_counter()
            try:
                worker.send(("validate", view, expectations))
                answer = worker.receive()
            except OSError:
                answer = None
            if answer is None:
                raise self._died(worker, f"while validating {len(view):,} rows")
        if answer[0] == "error":
            raise RuntimeError(f"Great Expectations failed in its worker process: {answer[1]}\n{answer[2]}")
        outcomes, failing = answer[1], answer[2]
        seconds = {"waiting for worker": ready - started, "validating": time.perf_counter() - ready}
        return outcomes, failing, seconds

    def close(self) -> None:
        with self._lock:
            worker, self._process = self._process, None
            if worker is None:
                return
            worker.kill()  # it holds nothing to save, and may be in the middle of importing GE

    def _ensure_started(self) -> WorkerProcess:
        if self._process is None or not self._process.running:
            if self._process is not None:
                self._process.kill()
            self._process = WorkerProcess(_WORKER_COMMAND)
        return self._process

    def _ensure_ready(self) -> WorkerProcess:
        worker = self._ensure_started()
        if worker.start_reply(_WORKER_START_S) != READY:
            raise self._died(
                worker, f"before it was ready (it has {_WORKER_START_S:g} s to import Great Expectations)"
            )
        return worker

    def _died(self, worker: WorkerProcess, when: str) -> ValidationWorkerError:
        self._process = None
        worker.stop(grace_s=2)  # it closed its end: give it a moment to exit on its own
        return ValidationWorkerError(
            f"the Great Expectations worker process ({sys.executable}) {worker.exit_description()} {when}; "
            "its error, if any, is on stderr above. A kill usually means the machine ran out of memory: give "
            "the run more memory or validate a smaller table. The next validation starts a fresh worker."
        )


_WORKER: list[_ValidationWorker] = []
_WORKER_LOCK = threading.Lock()


def _worker() -> _ValidationWorker:
    with _WORKER_LOCK:
        if not _WORKER:
            _WORKER.append(_ValidationWorker())
            atexit.register(_WORKER[0].close)
        return _WORKER[0]


def _warm_up(shared: _Validator) -> None:
    """Validate a tiny frame once, failing on purpose: GE's first validation loads metric providers and
    builds caches (~0.8 s), which would otherwise land on the first real one."""
    tiny = pd.DataFrame(
        {
            "text": pd.Series(["a", "b", None], dtype="string"),
            "number": [1.0, 2.0, np.nan],
            "day": pd.to_datetime(["2026-01-01", "2026-01-02", None]).astype("datetime64[ms]"),
        }
    )
    expectations = [
        Expectation.model_validate(item)
        for item in (
            {"not_null": {"column": "text"}},
            {"unique": {"column": "text"}},
            {"between": {"column": "number", "min": 0, "max": 1}},
            {"between": {"column": "day", "min": "2026-01-01"}},
            {"in_set": {"column": "text", "values": ["a"]}},
            {"regex": {"column": "text", "pattern": "^a$"}},
            {"row_count": {"min": 1}},
        )
    ]
    _validate_with_ge(shared, tiny, expectations)


def serve_validation_requests() -> None:
    """Worker main loop: import GE, say ready, then answer ("validate", view, expectations) requests.

    It ends at the end of its input, or quietly when its parent is gone (a closed reply pipe)."""
    with contextlib.suppress(BrokenPipeError):
        _serve_validation_requests()


def _serve_validation_requests() -> None:
    parent = ParentLink()
    shared = _Validator()
    _warm_up(shared)
    parent.send(READY)
    while (request := parent.receive()) is not None:
        _, view, expectations = request
        answer: tuple[Any, ...]
        try:
            answer = ("ok", *_validate_with_ge(shared, view, expectations))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            answer = ("error", f"{type(error).__name__}: {error}", traceback.format_exc())
        del view, request
        parent.send(answer)
