"""Rules that replace values of one column: ``map_values`` (listed values) and ``fill_nulls`` (nulls)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ods.domain.cleaning.distinct import map_distinct
from ods.domain.cleaning.frames import (
    TEXT_DTYPE,
    count_changes,
    filter_rows,
    require_column,
    require_text,
    with_columns,
)
from ods.domain.cleaning.report import RuleReport, example_text
from ods.domain.dataset_spec import DatasetSpecError, FillNullsRule, MapValuesRule
from ods.domain.profiling import logical_type


def map_values(
    frame: pd.DataFrame, rule: MapValuesRule, *, where: str = "map_values"
) -> tuple[pd.DataFrame, RuleReport]:
    """Replace exact values; unlisted values are kept (``default: keep``) or nulled (``default: null``)."""
    series = require_text(frame, rule.column, where, "column")
    mapping = rule.values
    keep = rule.default == "keep"

    def replace(text: str) -> str | None:
        if text in mapping:
            return mapping[text]
        return text if keep else None

    outcome = map_distinct(series, replace, TEXT_DTYPE)
    changed, nulled = count_changes(series, outcome.values)
    return with_columns(frame, {rule.column: outcome.values}), RuleReport(
        "map_values", (rule.column,), changed=changed, nulled=nulled
    )


def fill_nulls(
    frame: pd.DataFrame, rule: FillNullsRule, *, where: str = "fill_nulls"
) -> tuple[pd.DataFrame, RuleReport]:
    """Drop rows where the column is null, or fill its nulls with a constant, the median or the mode."""
    series = require_column(frame, rule.column, where)
    missing = series.isna()
    count = int(missing.sum())
    if rule.strategy == "drop_row":
        return filter_rows(frame, ~missing.to_numpy(dtype=bool)), RuleReport(
            "fill_nulls", (rule.column,), rows_dropped=count
        )
    kind = logical_type(series)
    if count == 0:
        return frame, RuleReport("fill_nulls", (rule.column,), detail=rule.strategy)
    value: Any
    if rule.strategy == "constant":
        value = str(rule.value) if kind == "string" and not isinstance(rule.value, str) else rule.value
    elif rule.strategy == "median":
        if kind not in ("int", "float", "decimal"):
            raise DatasetSpecError(
                f"{where}.strategy: median needs a numeric column, and {rule.column!r} is {kind}; "
                "coerce it first or use strategy mode"
            )
        value = series.median()
        if kind == "int" and not pd.isna(value):
            value = round(float(value))
    else:
        modes = series.mode(dropna=True)
        value = modes.iloc[0] if len(modes) else None
    if value is None or pd.isna(value):
        return frame, RuleReport(
            "fill_nulls", (rule.column,), detail=f"{rule.strategy}: column has no values"
        )
    try:
        filled = series.fillna(value)
    except (TypeError, ValueError) as exc:
        raise DatasetSpecError(
            f"{where}.value: {value!r} does not fit column {rule.column!r} of type {kind} ({exc})"
        ) from exc
    if filled.dtype != series.dtype:
        raise DatasetSpecError(f"{where}.value: {value!r} does not fit column {rule.column!r} of type {kind}")
    return with_columns(frame, {rule.column: filled}), RuleReport(
        "fill_nulls", (rule.column,), changed=count, detail=f"{rule.strategy}: {example_text(value)}"
    )
