"""The ``columns`` section of a spec: select, rename, then drop empty or mostly-empty columns."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import pandas as pd

from ods.domain.cleaning.frames import available_columns
from ods.domain.cleaning.report import RuleReport
from ods.domain.dataset_spec import ColumnsSpec, DatasetSpecError


def prepare_columns(
    frame: pd.DataFrame, columns: ColumnsSpec, *, where: str = "columns"
) -> tuple[pd.DataFrame, list[RuleReport]]:
    """``select`` (source names), then ``rename``, then drop empty / mostly-empty columns."""
    reports: list[RuleReport] = []
    current = frame
    if columns.select is not None:
        missing = [name for name in columns.select if name not in current.columns]
        if missing:
            raise DatasetSpecError(
                f"{where}.select: {_names(missing)} not in the table; {available_columns(current)}"
            )
        dropped = [name for name in current.columns if name not in columns.select]
        current = current.loc[:, list(columns.select)]
        reports.append(
            RuleReport("select_columns", tuple(dropped), columns_dropped=len(dropped), detail="not selected")
        )
    if columns.rename:
        missing = [name for name in columns.rename if name not in current.columns]
        if missing:
            raise DatasetSpecError(
                f"{where}.rename: {_names(missing)} not in the table; {available_columns(current)}"
            )
        kept = set(current.columns) - set(columns.rename)
        clashes = [target for target in columns.rename.values() if target in kept]
        if clashes:
            raise DatasetSpecError(
                f"{where}.rename: {_names(clashes)} already exist; pick other names or drop them with select"
            )
        current = current.rename(columns=columns.rename)
        reports.append(
            RuleReport("rename_columns", tuple(columns.rename.values()), changed=len(columns.rename))
        )
    null_counts = current.isna().sum()
    rows = len(current)
    if columns.drop_empty and rows:
        empty = [str(name) for name, nulls in null_counts.items() if nulls == rows]
        current = current.drop(columns=empty)
        reports.append(
            RuleReport("drop_empty_columns", tuple(empty), columns_dropped=len(empty), detail="no values")
        )
    if columns.max_null_fraction is not None and rows:
        limit = columns.max_null_fraction
        sparse = {
            str(name): nulls / rows
            for name, nulls in null_counts.items()
            if name in current.columns and nulls / rows > limit
        }
        current = current.drop(columns=list(sparse))
        detail = ", ".join(f"{name}: {share:.2%} null" for name, share in sparse.items())
        reports.append(
            RuleReport(
                "drop_sparse_columns",
                tuple(sparse),
                columns_dropped=len(sparse),
                detail=f"more than {limit * 100:g}% null" + (f" ({detail})" if detail else ""),
            )
        )
    return current, reports


def _names(names: Sequence[Hashable]) -> str:
    label = "column" if len(names) == 1 else "columns"
    return f"{label} {', '.join(repr(str(name)) for name in names)}"
