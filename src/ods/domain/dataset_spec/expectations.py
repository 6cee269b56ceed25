"""The expectations a cleaned dataset must meet: one model per kind (an expectation holds one, see
``items``), and which logical types each kind can check."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, TypeAlias

from pydantic import Field, field_validator, model_validator

from ods.domain.dataset_spec.base import Bound, LogicalType, Scalar, SpecModel, check_pattern

if TYPE_CHECKING:
    from ods.domain.dataset_spec.items import Expectation


class _ColumnExpectation(SpecModel):
    column: str
    mostly: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of rows that must pass.")


class NotNullExpectation(_ColumnExpectation):
    """Values are present."""


class UniqueExpectation(_ColumnExpectation):
    """Values do not repeat."""


class BetweenExpectation(_ColumnExpectation):
    """Values lie within ``min``..``max`` (inclusive; either bound may be left out)."""

    min: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _bounds(self) -> BetweenExpectation:
        if self.min is None and self.max is None:
            raise ValueError("between needs min, max or both")
        numeric = (int, float)
        if isinstance(self.min, numeric) and isinstance(self.max, numeric) and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class InSetExpectation(_ColumnExpectation):
    """Values are one of ``values``."""

    values: tuple[Scalar, ...] = Field(min_length=1)


class RegexExpectation(_ColumnExpectation):
    """Text values match ``pattern``."""

    pattern: str

    _pattern = field_validator("pattern")(check_pattern)


class RowCountExpectation(SpecModel):
    """The dataset has between ``min`` and ``max`` rows."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountExpectation:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class ColumnTypeExpectation(SpecModel):
    """The column has this logical type after cleaning."""

    column: str
    type: LogicalType


ExpectationParams: TypeAlias = (
    NotNullExpectation
    | UniqueExpectation
    | BetweenExpectation
    | InSetExpectation
    | RegexExpectation
    | RowCountExpectation
    | ColumnTypeExpectation
)


_NUMERIC_TYPES: tuple[LogicalType, ...] = ("int", "float", "decimal")
_TEMPORAL_TYPES: tuple[LogicalType, ...] = ("date", "timestamp")
TYPE_WORDS: dict[str, str] = {
    "int": "whole numbers",
    "float": "numbers",
    "decimal": "decimal numbers",
    "bool": "true/false values",
    "date": "dates",
    "timestamp": "timestamps",
    "string": "text",
}


def needed_types(params: ExpectationParams) -> tuple[tuple[LogicalType, ...], str, str] | None:
    """The logical types a column needs for ``params`` to be checkable, in words, and the coerce type to
    suggest; None when any type will do."""
    if isinstance(params, BetweenExpectation):
        bounds = [bound for bound in (params.min, params.max) if bound is not None]
        if any(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in bounds):
            return _NUMERIC_TYPES, "a numeric column", "int, float or decimal"
        if any(isinstance(bound, date) for bound in bounds):  # datetime is a date too
            return _TEMPORAL_TYPES, "a date or timestamp column", "date or timestamp"
        return (*_TEMPORAL_TYPES, "string"), "a date, timestamp or text column", "date or timestamp"
    if isinstance(params, RegexExpectation):
        return ("string",), "a text column", "string"
    return None


def expectation_type_problem(expectation: Expectation, column_type: str) -> str | None:
    """Why ``expectation`` cannot be checked on a column of logical type ``column_type`` (as it is after
    cleaning), with the ``coerce`` step that fixes it; None when the type fits, or is not one of ours.

    ``between`` with numbers compares numbers: on a text column every comparison fails at once and no
    single row can be blamed, so this is said instead of reporting a failure that quarantines nothing.
    """
    column = getattr(expectation.params, "column", None)
    needed = needed_types(expectation.params)
    if column is None or needed is None or column_type not in TYPE_WORDS:
        return None
    types, words, suggested = needed
    if column_type in types:
        return None
    return (
        f"needs {words}, but {column!r} is {TYPE_WORDS[column_type]} ({column_type}) after cleaning; "
        f"add a `coerce` step for {column!r} (type {suggested}) before validating"
    )
