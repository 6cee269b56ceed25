"""Work done once per distinct value: repetitive columns are cheap however long they are. A value the
function cannot interpret becomes null and is counted, with examples, never dropped silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ods.domain.cleaning.frames import TEXT_DTYPE
from ods.domain.cleaning.report import MAX_EXAMPLES, RuleReport, example_text

Parser = Callable[[pd.Series], pd.api.extensions.ExtensionArray]


@dataclass(frozen=True)
class Outcome:
    """A column converted one distinct value at a time: the new values, how many are non-null, how many
    non-null inputs became null, and the part of those the function failed on (with examples)."""

    values: pd.Series
    non_null: int
    nulled: int
    failed: int
    examples: tuple[str, ...]

    def report(self, rule: str, columns: tuple[str, ...], *, detail: str = "") -> RuleReport:
        """The report of a rule that converts values: the converted ones changed, the failed ones
        nulled and unparseable."""
        return RuleReport(
            rule,
            columns,
            changed=self.non_null,
            nulled=self.nulled,
            unparseable=self.failed,
            examples=self.examples,
            detail=detail,
        )


def map_distinct(series: pd.Series, function: Callable[[Any], object], dtype: object) -> Outcome:
    """Apply ``function`` once per distinct non-null value; a None result for a non-null input counts
    as failed (with examples in order of first appearance)."""
    codes, distinct = pd.factorize(series)
    mapped = pd.array([function(value) for value in distinct], dtype=dtype)
    return _outcome(mapped, codes, distinct, series, failed=pd.isna(mapped))


def parse_distinct(text: pd.Series, parser: Parser) -> Outcome:
    """Parse the stripped distinct texts with ``parser``; blanks become null without counting as failed."""
    codes, distinct = pd.factorize(text)
    stripped = pd.Series(distinct, dtype=TEXT_DTYPE).str.strip()
    blank = (stripped == "").to_numpy(dtype=bool, na_value=True)
    mapped = parser(stripped)
    failed = np.asarray(pd.isna(mapped), dtype=bool) & ~blank
    return _outcome(mapped, codes, distinct, text, failed=failed)


def _outcome(
    mapped: pd.api.extensions.ExtensionArray,
    codes: np.ndarray,
    distinct: pd.Index,
    original: pd.Series,
    *,
    failed: np.ndarray,
) -> Outcome:
    counts = np.bincount(codes[codes >= 0], minlength=len(distinct))
    became_null = np.asarray(pd.isna(mapped), dtype=bool)
    failed = np.asarray(failed, dtype=bool)
    examples = tuple(example_text(value) for value in distinct[failed][:MAX_EXAMPLES])
    values = take_codes(mapped, codes, original)
    return Outcome(
        values=values,
        non_null=int(counts[~became_null].sum()),
        nulled=int(counts[became_null].sum()),
        failed=int(counts[failed].sum()),
        examples=examples,
    )


def take_codes(mapped: pd.api.extensions.ExtensionArray, codes: np.ndarray, like: pd.Series) -> pd.Series:
    return pd.Series(mapped.take(codes, allow_fill=True), index=like.index, name=like.name)
