"""Text rules: ``normalize`` (Unicode form, spaces, case, empty -> null; vectorised with Arrow compute)
and ``extract`` (the first match of a pattern)."""

from __future__ import annotations

import re
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ods.domain.cleaning.arrow_text import is_text, per_chunk, replace_rows, string_buffers
from ods.domain.cleaning.distinct import map_distinct
from ods.domain.cleaning.frames import (
    TEXT_DTYPE,
    as_text,
    require_column,
    require_text,
    text_array,
    with_columns,
)
from ods.domain.cleaning.report import RuleReport
from ods.domain.dataset_spec import ExtractRule, NormalizeRule
from ods.domain.profiling import logical_type

_UNICODE_SPACE: Final = r"[\s\p{Z}]+"  # RE2: \s alone is ASCII-only
_TRIMMED_SPACE: Final = " \t\n\r\f\v\u00a0\u3000"


def normalize_text(
    frame: pd.DataFrame, rule: NormalizeRule, *, where: str = "normalize"
) -> tuple[pd.DataFrame, RuleReport]:
    """Unicode form, collapse runs of spaces, trim spaces and ``strip_chars`` from both ends, letter
    case, then empty text -> null (vectorised with Arrow compute)."""
    if rule.columns == "all":
        names = [name for name in frame.columns if logical_type(frame[name]) == "string"]
    else:
        names = list(rule.columns)
        for name in names:
            require_text(frame, name, where, "columns")
    updates: dict[str, pd.Series] = {}
    changed = nulled = 0
    for name in names:
        series = frame[name]
        before = text_array(series)
        after = _normalize_array(before, rule)
        if after is before and series.dtype == TEXT_DTYPE:
            continue  # no rule touched the column: nothing changed, nothing to count
        column_changed = _count_true(pc.and_(pc.is_valid(after), pc.not_equal(before, after)))
        column_nulled = _count_true(pc.and_(pc.is_valid(before), pc.is_null(after)))
        changed += column_changed
        nulled += column_nulled
        if column_changed or column_nulled or series.dtype != TEXT_DTYPE:
            updates[name] = pd.Series(pd.arrays.ArrowStringArray(after), index=series.index, name=name)
        # else: the same values, so the column is kept as it is instead of holding a second copy
    return with_columns(frame, updates), RuleReport("normalize", tuple(names), changed=changed, nulled=nulled)


def _normalize_array(values: pa.Array | pa.ChunkedArray, rule: NormalizeRule) -> pa.Array | pa.ChunkedArray:
    result = values
    if rule.unicode:
        result = _unicode_normalize(result, rule.unicode)
    if rule.collapse_spaces:
        result = _collapse_spaces(result)
    if rule.trim:
        result = _trim_whitespace(result)
    if rule.strip_chars:
        result = pc.utf8_trim(result, characters=rule.strip_chars + (_TRIMMED_SPACE if rule.trim else ""))
    if rule.case is not None:
        result = {"lower": pc.utf8_lower, "upper": pc.utf8_upper, "title": pc.utf8_title}[rule.case](result)
    if rule.empty_as_null and _has_empty(result):
        result = pc.if_else(pc.equal(result, ""), pa.scalar(None, result.type), result)
    return result


def _unicode_normalize(values: pa.Array | pa.ChunkedArray, form: str) -> pa.Array | pa.ChunkedArray:
    """``utf8_normalize`` of the values that hold a non-ASCII byte: ASCII text is already in every
    Unicode normal form, so most columns are left as they are (and recognised as unchanged)."""
    if isinstance(values, pa.ChunkedArray):
        return per_chunk(lambda chunk: _unicode_normalize(chunk, form), values)
    if len(values) == 0 or not is_text(values):
        return pc.utf8_normalize(values, form=form)
    offsets, data = string_buffers(values)
    return replace_rows(
        values,
        data[: int(offsets[-1])] >= 0x80,
        offsets,
        lambda suspect: pc.utf8_normalize(suspect, form=form),
    )


def _collapse_spaces(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Every run of Unicode spaces as one ' '; the regex runs only on values that may hold such a run
    (found by a vectorised scan of the bytes), the rest are unchanged by it anyway."""
    if isinstance(values, pa.ChunkedArray):
        return per_chunk(_collapse_spaces, values)
    if len(values) == 0 or not is_text(values):
        return pc.replace_substring_regex(values, pattern=_UNICODE_SPACE, replacement=" ")
    offsets, data = string_buffers(values)
    data = data[: int(offsets[-1])]
    # control characters (< 0x20, a superset of ASCII white space other than ' ') and non-ASCII bytes
    suspect = (data - np.uint8(0x20)) >= 0x60
    space = data == 0x20
    suspect[1:] |= space[1:] & space[:-1]
    return replace_rows(
        values,
        suspect,
        offsets,
        lambda rows: pc.replace_substring_regex(rows, pattern=_UNICODE_SPACE, replacement=" "),
    )


def _trim_whitespace(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``utf8_trim_whitespace``, skipped where no value starts or ends with a byte that can belong to
    white space (ASCII control characters and space, or any non-ASCII byte)."""
    if isinstance(values, pa.ChunkedArray):
        return per_chunk(_trim_whitespace, values)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pc.utf8_trim_whitespace(values)
    offsets, data = string_buffers(values)
    filled = offsets[1:] > offsets[:-1]
    first = data[offsets[:-1][filled]]
    last = data[offsets[1:][filled] - 1]
    if ((first <= 0x20) | (first >= 0x80) | (last <= 0x20) | (last >= 0x80)).any():
        return pc.utf8_trim_whitespace(values)
    return values


def _has_empty(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any value is the empty text (nulls do not count)."""
    if isinstance(values, pa.ChunkedArray):
        return any(_has_empty(chunk) for chunk in values.chunks)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return True
    offsets, _ = string_buffers(values)
    empty = np.diff(offsets) == 0
    if values.null_count:
        empty &= pc.is_valid(values).to_numpy(zero_copy_only=False)
    return bool(empty.any())


def extract_pattern(
    frame: pd.DataFrame, rule: ExtractRule, *, where: str = "extract"
) -> tuple[pd.DataFrame, RuleReport]:
    """The first capture group (or whole match) of the first match of ``pattern`` into ``into``;
    values with no match become null and are counted as unparseable."""
    source = as_text(require_column(frame, rule.column, where))
    pattern = re.compile(rule.pattern)

    def first_group(text: str) -> str | None:
        match = pattern.search(text)
        if match is None:
            return None
        return match.group(1) if pattern.groups else match.group(0)

    outcome = map_distinct(source, first_group, TEXT_DTYPE)
    target = rule.into or rule.column
    columns = (rule.column, target) if target != rule.column else (rule.column,)
    # every value that became null is one the pattern did not match: nulled == failed here
    return with_columns(frame, {target: outcome.values}), outcome.report("extract", columns)


def _count_true(mask: pa.Array) -> int:
    total = pc.sum(mask.cast(pa.int64())).as_py()
    return int(total or 0)
