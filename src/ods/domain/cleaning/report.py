"""What the cleaning rules report: one :class:`RuleReport` per rule, and the :class:`CleaningResult` of a spec."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import pandas as pd

MAX_EXAMPLES: Final = 5
MAX_EXAMPLE_CHARS: Final = 80


@dataclass(frozen=True)
class RuleReport:
    """What one rule did.

    ``changed``: values rewritten (or filled, or converted); ``nulled``: non-null values that became null;
    ``unparseable``: the part of ``nulled`` the rule could not interpret (failed conversions, no pattern
    match), with up to 5 distinct ``examples``; ``rows_dropped`` / ``columns_dropped``: removed rows and
    columns (``columns`` then names the dropped columns). ``step`` is the index in ``spec.steps``;
    ``pii_kinds`` maps each column mask_pii protected to its kind ('unknown' when none was detected).
    """

    rule: str
    columns: tuple[str, ...]
    step: int | None = None
    changed: int = 0
    nulled: int = 0
    unparseable: int = 0
    rows_dropped: int = 0
    columns_dropped: int = 0
    examples: tuple[str, ...] = ()
    detail: str = ""
    pii_kinds: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for run artifacts and the catalog)."""
        data = dataclasses.asdict(self)
        data["columns"] = list(self.columns)
        data["examples"] = list(self.examples)
        return data


@dataclass(frozen=True)
class CleaningResult:
    """The cleaned frame, the report of every rule in order, and the PII kinds of masked columns."""

    frame: pd.DataFrame
    report: list[RuleReport]
    rows_in: int
    columns_in: int
    pii_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def rows_out(self) -> int:
        return len(self.frame)

    def reports_for(self, rule: str) -> list[RuleReport]:
        """The reports of every use of ``rule`` (e.g. 'coerce'), in order."""
        return [report for report in self.report if report.rule == rule]

    def report_as_dicts(self) -> list[dict[str, Any]]:
        return [report.as_dict() for report in self.report]


def example_text(value: object) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…"
