"""The validated dataset spec, and the problems only the whole spec shows (an expectation on a column
the selection drops, or of a type the steps rule out), found before any data is read."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from ods.domain.dataset_spec.base import LogicalType, Path_, SpecModel, format_path
from ods.domain.dataset_spec.expectations import TYPE_WORDS, needed_types
from ods.domain.dataset_spec.items import Expectation, Step
from ods.domain.dataset_spec.rules import CoerceRule, DeriveRule, ExtractRule, MapValuesRule
from ods.domain.dataset_spec.source import ColumnsSpec, SourceSpec
from ods.domain.hashing import sha256_bytes
from ods.domain.names import name_problem


class DatasetSpec(SpecModel):
    """A validated dataset spec. Build it with :func:`parse_dataset_spec`."""

    name: str = Field(
        description="Dataset name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter."
    )
    description: str = ""
    source: SourceSpec
    columns: ColumnsSpec = Field(default_factory=ColumnsSpec)
    steps: tuple[Step, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    train: dict[str, Any] | None = Field(
        default=None, description="Free-form hints passed on in the dataset.registered event."
    )

    _source_name: str = PrivateAttr(default="<spec>")
    _lines: dict[Path_, int] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        problem = name_problem("dataset", value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the validated spec: key order, layout and defaults written
        out or left implicit do not change it."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return sha256_bytes(canonical.encode("utf-8"))

    def where(self, *path: str | int) -> str:
        """``'bl_books.yaml line 14, steps[2].coerce.column'``: where ``path`` is written in the spec,
        for messages about problems found only once the spec meets the data."""
        line = None
        for depth in range(len(path), -1, -1):
            line = self._lines.get(path[:depth])
            if line is not None:
                break
        located = self._source_name if line is None else f"{self._source_name} line {line}"
        return f"{located}, {format_path(path)}" if path else located


def _type_after_steps(steps: tuple[Step, ...], column: str) -> tuple[LogicalType, int] | None:
    """The logical type ``column`` surely has after the cleaning steps and the step that gives it: known
    when the last step writing it is a ``coerce`` (or an ``extract``, which writes text); else None."""
    known: tuple[LogicalType, int] | None = None
    for index, step in enumerate(steps):
        rule = step.rule
        if isinstance(rule, CoerceRule) and rule.column == column:
            known = (rule.type, index)
        elif isinstance(rule, ExtractRule) and (rule.into or rule.column) == column:
            known = ("string", index)
        elif isinstance(rule, DeriveRule | MapValuesRule) and rule.column == column:
            known = None
    return known


def _selected_columns(spec: DatasetSpec) -> set[str] | None:
    """The columns the cleaned table can have when the spec selects its columns (renamed, plus the
    columns steps write), or None when the source's columns decide."""
    if spec.columns.select is None:
        return None
    columns = {spec.columns.rename.get(name, name) for name in spec.columns.select}
    for step in spec.steps:
        rule = step.rule
        if isinstance(rule, ExtractRule) and rule.into:
            columns.add(rule.into)
        elif isinstance(rule, DeriveRule):
            columns.add(rule.column)
    return columns


def spec_problems(spec: DatasetSpec) -> list[str]:
    """Expectations the spec itself makes impossible to check, each located in the file, found at load
    time before any data is read: a column the selection leaves out, or a type the steps give a column
    that the expectation cannot use (``between`` with numbers on a column coerced to string)."""
    problems = []
    selected = _selected_columns(spec)
    for index, expectation in enumerate(spec.expectations):
        column = getattr(expectation.params, "column", None)
        if selected is not None and column is not None and column not in selected:
            problems.append(
                f"{spec.where('expectations', index, expectation.name, 'column')}: column {column!r} is not "
                f"among the columns the spec keeps ({', '.join(sorted(selected))}); "
                "select it under columns.select, or name a kept column"
            )
            continue
        needed = needed_types(expectation.params)
        known = _type_after_steps(spec.steps, column) if column is not None and needed else None
        if known is None or needed is None or known[0] in needed[0]:
            continue
        column_type, step = known
        problems.append(
            f"{spec.where('expectations', index, expectation.name, 'column')}: {expectation.name}({column}) "
            f"needs {needed[1]}, but {spec.where('steps', step)} makes {column!r} {TYPE_WORDS[column_type]} "
            f"({column_type}); coerce it to {needed[2]} instead, or drop the expectation"
        )
    return problems
