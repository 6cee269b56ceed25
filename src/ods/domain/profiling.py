"""Column profiles of a table: types, nulls, distinct counts, ranges, frequent values and personal data.

The profile is a JSON-serialisable dict stored with each dataset version and shown to people deciding
whether a dataset is fit for use, so every number in it is computed over the whole table, not a sample
(only PII detection samples: up to 1,000 values per column).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from ods.domain.dataset_spec import LogicalType
from ods.domain.pii import MAX_SAMPLE, detect_pii_kind

TOP_VALUES: Final = 5

JsonScalar = bool | int | float | str | None
"""A value as the profile stores it: numbers stay numbers, dates are ISO strings, decimals exact strings."""


class TopValue(TypedDict):
    """One of a text or boolean column's most frequent values."""

    value: JsonScalar
    count: int


class ColumnProfile(TypedDict):
    """What the profile says of one column (keys in the order they are stored)."""

    dtype: str
    null_count: int
    null_rate: float
    distinct_count: int | None
    min: JsonScalar
    max: JsonScalar
    mean: float | str | None
    top_values: list[TopValue] | None
    pii_kind: str | None


class TableProfile(TypedDict):
    """A table's profile, as stored with its dataset version (plain JSON)."""

    row_count: int
    column_count: int
    columns: dict[str, ColumnProfile]


_INFERRED_TYPES: Final[dict[str, str]] = {
    "string": "string",
    "empty": "string",
    "integer": "int",
    "floating": "float",
    "mixed-integer-float": "float",
    "decimal": "decimal",
    "boolean": "bool",
    "date": "date",
    "datetime": "timestamp",
    "datetime64": "timestamp",
}


def logical_type(series: pd.Series) -> LogicalType | str:
    """Our logical type of a column: int, float, decimal, bool, date, timestamp, string, or ``other``
    (nested, binary, durations, mixed Python objects)."""
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype):
        return _arrow_logical_type(dtype.pyarrow_dtype)
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_object_dtype(dtype):
        return _INFERRED_TYPES.get(pd.api.types.infer_dtype(series, skipna=True), "other")
    return "other"


def _arrow_logical_type(arrow_type: pa.DataType) -> str:
    checks = (
        (pa.types.is_boolean, "bool"),
        (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"),
        (pa.types.is_decimal, "decimal"),
        (pa.types.is_date, "date"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
    )
    return next((name for check, name in checks if check(arrow_type)), "other")


def is_text_column(series: pd.Series) -> bool:
    """Whether the column holds text (any string dtype, or Python strings in an object column)."""
    return logical_type(series) == "string"


def profile_frame(frame: pd.DataFrame, pii_kinds: dict[str, str] | None = None) -> TableProfile:
    """Profile every column of ``frame``.

    ``pii_kinds`` (column -> kind, e.g. from the mask_pii step) overrides detection for those columns;
    other text columns are checked by :func:`ods.domain.pii.detect_pii_kind`.
    """
    rows = len(frame)
    columns: dict[str, ColumnProfile] = {}
    for position, name in enumerate(frame.columns):
        series = frame.iloc[:, position]
        column = _profile_column(series, rows)
        if pii_kinds is not None and str(name) in pii_kinds:
            column["pii_kind"] = pii_kinds[str(name)]
        elif column["dtype"] == "string":
            column["pii_kind"] = detect_pii_kind(str(name), sample_values(series))
        else:
            column["pii_kind"] = None
        columns[str(name)] = column
    return {"row_count": rows, "column_count": len(columns), "columns": columns}


def _profile_column(series: pd.Series, rows: int) -> ColumnProfile:
    kind = logical_type(series)
    null_count = int(series.isna().sum())
    profile = ColumnProfile(
        dtype=kind,
        null_count=null_count,
        null_rate=round(null_count / rows, 6) if rows else 0.0,
        distinct_count=None,
        min=None,
        max=None,
        mean=None,
        top_values=None,
        pii_kind=None,  # set by the caller, which knows the cleaning's masked columns
    )
    values = series.dropna()
    if kind in ("string", "bool"):
        counts = values.value_counts(dropna=True, sort=False)
        profile["distinct_count"] = len(counts)
        top = counts.nlargest(TOP_VALUES, keep="first")
        profile["top_values"] = [
            {"value": _json_value(value), "count": int(count)} for value, count in top.items()
        ]
        if kind == "bool" and len(values):
            profile["mean"] = _json_number(values.astype("float64").mean())
        return profile
    if kind == "other":
        return profile
    try:
        profile["distinct_count"] = int(values.nunique())
    except TypeError:  # unhashable values, e.g. lists
        return profile
    if len(values) == 0:
        return profile
    profile["min"] = _json_value(values.min())
    profile["max"] = _json_value(values.max())
    if kind in ("int", "float"):
        profile["mean"] = _json_number(values.astype("float64").mean())
    elif kind == "decimal":
        total = values.sum()
        profile["mean"] = _json_value(Decimal(total) / len(values) if isinstance(total, Decimal) else None)
    return profile


def sample_values(series: pd.Series, size: int = MAX_SAMPLE) -> list[object]:
    """Up to ``size`` non-null values spread evenly over the column (deterministic)."""
    values = series.dropna()
    if len(values) > size:
        values = values.iloc[np.linspace(0, len(values) - 1, num=size).astype(np.int64)]
    sample: list[object] = values.tolist()
    return sample


def _json_number(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) or math.isinf(number) else number


def _json_value(value: object) -> Any:
    """A JSON-ready scalar: numbers stay numbers, dates become ISO strings, decimals exact strings."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    return str(value)
