"""Great Expectations runs in a worker process: same outcomes, GE never imported by the caller, a dead
worker is reported clearly and replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from ods.domain.dataset_spec import Expectation
from ods.quality.validation import (
    ValidationWorkerError,
    start_validation_worker,
    validate_frame,
    validation_worker_pid,
)


def _expectations(*items: dict[str, object]) -> list[Expectation]:
    return [Expectation.model_validate(item) for item in items]


def _frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": pd.Series(["a1", "a2", "a2", "a4", None], dtype="string[pyarrow]"),
            "amount": pd.Series([1.5, 2.0, 99.0, 3.0, 4.0], dtype="float64[pyarrow]"),
            "count": pd.Series([1, 2, 3, None, 5], dtype="Int64"),
        }
    )
    frame.index = pd.Index([10, 11, 12, 13, 14])  # positions, not labels, come back
    return frame


EXPECTATIONS = _expectations(
    {"not_null": {"column": "id"}},
    {"unique": {"column": "id"}},
    {"between": {"column": "amount", "min": 0, "max": 10}},
    {"column_type": {"column": "count", "type": "int"}},
    {"row_count": {"min": 1, "max": 10}},
    {"regex": {"column": "id", "pattern": "^a[0-9]$"}},
)


def test_outcomes_in_spec_order_with_failing_positions() -> None:
    report = validate_frame(_frame(), EXPECTATIONS)

    assert [outcome.expectation for outcome in report.outcomes] == [
        "not_null",
        "unique",
        "between",
        "column_type",
        "row_count",
        "regex",
    ]
    assert [outcome.success for outcome in report.outcomes] == [False, False, False, True, True, True]
    assert report.outcomes[1].unexpected_count == 2
    assert report.failing_rows == [1, 2, 4]  # duplicate a2 twice, 99.0 out of range, the null id
    assert set(report.seconds) == {"waiting for worker", "validating"}
    assert validation_worker_pid() not in (None, os.getpid())


def test_the_calling_process_never_imports_great_expectations() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pandas as pd
        from ods.domain.dataset_spec import Expectation
        from ods.quality.validation import validate_frame
        frame = pd.DataFrame({"x": [1.0, 2.0, None]})
        report = validate_frame(frame, [Expectation.model_validate({"not_null": {"column": "x"}})])
        print(report.success, report.failing_rows, "great_expectations" in sys.modules)
        """
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert completed.stdout.split() == ["False", "[2]", "False"]


def test_a_killed_worker_fails_that_call_clearly_and_the_next_call_gets_a_fresh_one() -> None:
    start_validation_worker()
    expectations = _expectations({"not_null": {"column": "x"}})
    frame = pd.DataFrame({"x": np.arange(5.0)})
    assert validate_frame(frame, expectations).success
    pid = validation_worker_pid()
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ValidationWorkerError, match="killed by SIGKILL while validating 5 rows"):
        validate_frame(frame, expectations)

    assert validate_frame(frame, expectations).success
    assert validation_worker_pid() not in (None, pid)


def test_no_expectation_needs_no_worker_call() -> None:
    report = validate_frame(_frame(), [])

    assert report.success and report.outcomes == [] and report.seconds == {}
