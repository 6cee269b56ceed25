"""The ``derive`` rule: a column computed with a pandas expression over the others."""

from __future__ import annotations

import pandas as pd

from ods.domain.cleaning.frames import TEXT_DTYPE, available_columns, count_changes, with_columns
from ods.domain.cleaning.report import RuleReport
from ods.domain.dataset_spec import DatasetSpecError, DeriveRule
from ods.domain.profiling import logical_type


def derive_column(
    frame: pd.DataFrame, rule: DeriveRule, *, where: str = "derive"
) -> tuple[pd.DataFrame, RuleReport]:
    """``column = frame.eval(expression)`` (pandas expression syntax; quote odd column names with
    backticks). Caller variables (``@name``) are not available: the spec is data, not code."""
    try:
        result = frame.eval(rule.expression, engine="python", local_dict={}, global_dict={})
    except Exception as exc:
        raise DatasetSpecError(
            f"{where}.expression: {rule.expression!r} failed: {type(exc).__name__}: {exc}; "
            f"{available_columns(frame)}"
        ) from exc
    if isinstance(result, pd.DataFrame):
        raise DatasetSpecError(
            f"{where}.expression: {rule.expression!r} assigns instead of computing a value; "
            "write only the right-hand side and name the result with column:"
        )
    if not isinstance(result, pd.Series):
        result = pd.Series([result] * len(frame), index=frame.index)
    derived = _nullable(result.rename(rule.column))
    old = frame[rule.column] if rule.column in frame.columns else None
    changed, nulled = count_changes(old, derived)
    return with_columns(frame, {rule.column: derived}), RuleReport(
        "derive", (rule.column,), changed=changed, nulled=nulled, detail=rule.expression
    )


def _nullable(series: pd.Series) -> pd.Series:
    """numpy results of an expression as nullable/Arrow dtypes, like the rest of the frame."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.ArrowDtype):
        return series.astype("boolean")
    if pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.ArrowDtype):
        return series.astype("Int64")
    if pd.api.types.is_float_dtype(dtype) and not isinstance(dtype, pd.ArrowDtype):
        return series.astype("Float64")
    if pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype):
        kind = logical_type(series)
        return series.astype(TEXT_DTYPE) if kind == "string" else series
    return series
