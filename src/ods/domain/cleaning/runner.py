"""Running a spec: the ``columns`` section, then every step's rule in order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

import pandas as pd

from ods.domain.cleaning.coercion import coerce_column
from ods.domain.cleaning.columns import prepare_columns
from ods.domain.cleaning.deduplicate import deduplicate_rows
from ods.domain.cleaning.derive import derive_column
from ods.domain.cleaning.masking import mask_pii
from ods.domain.cleaning.replacing import fill_nulls, map_values
from ods.domain.cleaning.report import CleaningResult, RuleReport
from ods.domain.cleaning.text import extract_pattern, normalize_text
from ods.domain.dataset_spec import DatasetSpec, DatasetSpecError, MaskPiiRule, Step


def apply_cleaning(frame: pd.DataFrame, spec: DatasetSpec, *, pii_salt: str = "") -> CleaningResult:
    """Select, rename and drop columns as ``spec.columns`` says, then run ``spec.steps`` in order.

    ``pii_salt`` salts the ``hash`` policy of mask_pii; it is a secret, so it comes from settings, never
    from the spec. Raises :class:`DatasetSpecError` when the spec does not fit the table.
    """
    duplicated = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise DatasetSpecError(
            f"{spec.where()}: the table has several columns named {', '.join(map(repr, duplicated))}; "
            "make the header names unique in the source"
        )
    rows_in, columns_in = frame.shape
    current = frame.rename(columns=str) if any(not isinstance(c, str) for c in frame.columns) else frame
    # A caller that hands over its only reference to ``frame`` lets each raw column be freed as soon as
    # the rules have replaced it (it is never modified).
    del frame
    current, reports = prepare_columns(current, spec.columns, where=spec.where("columns"))
    pii_kinds: dict[str, str] = {}
    for index, step in enumerate(spec.steps):
        where = spec.where("steps", index, step.name)
        current, report = _run_rule(current, step, where=where, pii_salt=pii_salt)
        pii_kinds.update(report.pii_kinds)
        reports.append(dataclasses.replace(report, step=index))
    return CleaningResult(
        frame=current.reset_index(drop=True),
        report=reports,
        rows_in=rows_in,
        columns_in=columns_in,
        pii_kinds=pii_kinds,
    )


RuleFunction: TypeAlias = Callable[..., tuple[pd.DataFrame, RuleReport]]
"""``function(frame, rule, *, where)``: a new frame and what the rule did."""

_RULE_FUNCTIONS: Final[Mapping[str, RuleFunction]] = {
    "normalize": normalize_text,
    "extract": extract_pattern,
    "coerce": coerce_column,
    "map_values": map_values,
    "fill_nulls": fill_nulls,
    "deduplicate": deduplicate_rows,
    "derive": derive_column,
}
"""The function of each rule, by the name the spec writes it under (``- coerce: ...``)."""


def _run_rule(
    frame: pd.DataFrame, step: Step, *, where: str, pii_salt: str
) -> tuple[pd.DataFrame, RuleReport]:
    rule = step.rule
    if isinstance(rule, MaskPiiRule):  # the one rule with a secret: the salt comes from settings
        return mask_pii(frame, rule, salt=pii_salt, where=where)
    return _RULE_FUNCTIONS[step.name](frame, rule, where=where)
