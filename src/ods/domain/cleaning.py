"""Cleaning rules: one pure function per rule of the dataset spec, and :func:`apply_cleaning` to run a spec.

Every function takes a DataFrame and returns a new one with a :class:`RuleReport` that counts what it
did; inputs are never modified. Values a rule cannot interpret become null and are counted (with
examples), never dropped silently. Text work runs once per distinct value, so repetitive columns are
cheap however long they are.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import unicodedata
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ods.domain.dataset_spec import (
    CoerceRule,
    ColumnsSpec,
    DatasetSpec,
    DatasetSpecError,
    DeduplicateRule,
    DeriveRule,
    ExtractRule,
    FillNullsRule,
    MapValuesRule,
    MaskPiiRule,
    NormalizeRule,
    PiiKind,
    Rule,
)
from ods.domain.pii import GENERIC_MASK, detect_pii_kind, protect_values
from ods.domain.profiling import logical_type, sample_values

TEXT_DTYPE: Final = pd.StringDtype("pyarrow")
MAX_EXAMPLES: Final = 5
MAX_EXAMPLE_CHARS: Final = 80
TRUE_TOKENS: Final = frozenset({"true", "t", "yes", "y", "1", "是"})
FALSE_TOKENS: Final = frozenset({"false", "f", "no", "n", "0", "否"})
_UNICODE_SPACE: Final = r"[\s\p{Z}]+"  # RE2: \s alone is ASCII-only
_TRIMMED_SPACE: Final = " \t\n\r\f\v\u00a0\u3000"
_KEY_PUNCTUATION: Final = re.compile(r"[^\w\s]|_")
_KEY_SPACE: Final = re.compile(r"\s+")
_INT_TEXT: Final = re.compile(r"[+-]?\d+")
_DECIMAL_CONTEXT: Final = Context(prec=80)


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


# --- running a spec ----------------------------------------------------------------------------------


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
        current, report = _run_rule(current, step.rule, where=where, pii_salt=pii_salt)
        pii_kinds.update(report.pii_kinds)
        reports.append(dataclasses.replace(report, step=index))
    return CleaningResult(
        frame=current.reset_index(drop=True),
        report=reports,
        rows_in=rows_in,
        columns_in=columns_in,
        pii_kinds=pii_kinds,
    )


def _run_rule(
    frame: pd.DataFrame, rule: Rule, *, where: str, pii_salt: str
) -> tuple[pd.DataFrame, RuleReport]:
    match rule:
        case NormalizeRule():
            return normalize_text(frame, rule, where=where)
        case ExtractRule():
            return extract_pattern(frame, rule, where=where)
        case CoerceRule():
            return coerce_column(frame, rule, where=where)
        case MapValuesRule():
            return map_values(frame, rule, where=where)
        case FillNullsRule():
            return fill_nulls(frame, rule, where=where)
        case DeduplicateRule():
            return deduplicate_rows(frame, rule, where=where)
        case DeriveRule():
            return derive_column(frame, rule, where=where)
        case MaskPiiRule():
            return mask_pii(frame, rule, salt=pii_salt, where=where)
    raise AssertionError(f"no function for rule {rule!r}")  # pragma: no cover - Step allows no other rule


# --- columns -----------------------------------------------------------------------------------------


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
                f"{where}.select: {_names(missing)} not in the table; {_available(current)}"
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
                f"{where}.rename: {_names(missing)} not in the table; {_available(current)}"
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


# --- rules -------------------------------------------------------------------------------------------


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
            _require_text(frame, name, where, "columns")
    updates: dict[str, pd.Series] = {}
    changed = nulled = 0
    for name in names:
        series = frame[name]
        before = _text_array(series)
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
    return _with_columns(frame, updates), RuleReport(
        "normalize", tuple(names), changed=changed, nulled=nulled
    )


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


def _string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets of the array's values, its UTF-8 data bytes) without copying."""
    _, offsets_buffer, data_buffer = values.buffers()[:3]
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[
        values.offset : values.offset + len(values) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, dtype=np.uint8)
    )
    return offsets, data


def _per_chunk(
    function: Callable[[pa.Array], pa.Array | pa.ChunkedArray], values: pa.ChunkedArray
) -> pa.ChunkedArray:
    """``function`` applied to every chunk; ``values`` itself when no chunk changed."""
    chunks = values.chunks
    results = [function(chunk) for chunk in chunks]
    if all(result is chunk for result, chunk in zip(results, chunks, strict=True)):
        return values
    return pa.chunked_array(results, type=values.type)


def _is_text(values: pa.Array) -> bool:
    return bool(pa.types.is_string(values.type) or pa.types.is_large_string(values.type))


def _replace_rows(
    values: pa.Array,
    suspect: np.ndarray,
    offsets: np.ndarray,
    function: Callable[[pa.Array], pa.Array],
) -> pa.Array:
    """``function`` applied only to the values holding a ``suspect`` byte (``suspect`` covers the data
    buffer from offset 0); the others are kept as they are. ``values`` itself when none is suspect."""
    start = int(offsets[0])
    positions = np.flatnonzero(suspect[start:]) + start
    if len(positions) == 0:
        return values
    rows = np.zeros(len(values), dtype=bool)
    rows[np.searchsorted(offsets, positions, side="right") - 1] = True
    mask = pa.array(rows, type=pa.bool_())
    return pc.replace_with_mask(values, mask, function(pc.filter(values, mask)))


def _unicode_normalize(values: pa.Array | pa.ChunkedArray, form: str) -> pa.Array | pa.ChunkedArray:
    """``utf8_normalize`` of the values that hold a non-ASCII byte: ASCII text is already in every
    Unicode normal form, so most columns are left as they are (and recognised as unchanged)."""
    if isinstance(values, pa.ChunkedArray):
        return _per_chunk(lambda chunk: _unicode_normalize(chunk, form), values)
    if len(values) == 0 or not _is_text(values):
        return pc.utf8_normalize(values, form=form)
    offsets, data = _string_buffers(values)
    return _replace_rows(
        values,
        data[: int(offsets[-1])] >= 0x80,
        offsets,
        lambda suspect: pc.utf8_normalize(suspect, form=form),
    )


def _collapse_spaces(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Every run of Unicode spaces as one ' '; the regex runs only on values that may hold such a run
    (found by a vectorised scan of the bytes), the rest are unchanged by it anyway."""
    if isinstance(values, pa.ChunkedArray):
        return _per_chunk(_collapse_spaces, values)
    if len(values) == 0 or not _is_text(values):
        return pc.replace_substring_regex(values, pattern=_UNICODE_SPACE, replacement=" ")
    offsets, data = _string_buffers(values)
    data = data[: int(offsets[-1])]
    # control characters (< 0x20, a superset of ASCII white space other than ' ') and non-ASCII bytes
    suspect = (data - np.uint8(0x20)) >= 0x60
    space = data == 0x20
    suspect[1:] |= space[1:] & space[:-1]
    return _replace_rows(
        values,
        suspect,
        offsets,
        lambda rows: pc.replace_substring_regex(rows, pattern=_UNICODE_SPACE, replacement=" "),
    )


def _trim_whitespace(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``utf8_trim_whitespace``, skipped where no value starts or ends with a byte that can belong to
    white space (ASCII control characters and space, or any non-ASCII byte)."""
    if isinstance(values, pa.ChunkedArray):
        return _per_chunk(_trim_whitespace, values)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pc.utf8_trim_whitespace(values)
    offsets, data = _string_buffers(values)
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
    offsets, _ = _string_buffers(values)
    empty = np.diff(offsets) == 0
    if values.null_count:
        empty &= pc.is_valid(values).to_numpy(zero_copy_only=False)
    return bool(empty.any())


def extract_pattern(
    frame: pd.DataFrame, rule: ExtractRule, *, where: str = "extract"
) -> tuple[pd.DataFrame, RuleReport]:
    """The first capture group (or whole match) of the first match of ``pattern`` into ``into``;
    values with no match become null and are counted as unparseable."""
    source = _as_text(_require(frame, rule.column, where))
    pattern = re.compile(rule.pattern)

    def first_group(text: str) -> str | None:
        match = pattern.search(text)
        if match is None:
            return None
        return match.group(1) if pattern.groups else match.group(0)

    outcome = _map_distinct(source, first_group, TEXT_DTYPE)
    target = rule.into or rule.column
    return _with_columns(frame, {target: outcome.values}), RuleReport(
        "extract",
        (rule.column, target) if target != rule.column else (rule.column,),
        changed=outcome.non_null,
        nulled=outcome.failed,
        unparseable=outcome.failed,
        examples=outcome.examples,
    )


def coerce_column(
    frame: pd.DataFrame, rule: CoerceRule, *, where: str = "coerce"
) -> tuple[pd.DataFrame, RuleReport]:
    """Convert a column to ``rule.type``. Blank text becomes null; values that do not parse become null
    and are counted as unparseable. ``changed`` counts the converted (non-null) values."""
    series = _require(frame, rule.column, where)
    target = _target_dtype(rule)
    if logical_type(series) == rule.type and (target is None or series.dtype == target):
        return frame, RuleReport("coerce", (rule.column,), detail=f"already {rule.type}")
    if rule.type == "string":
        converted = series.astype(TEXT_DTYPE)
        return _with_columns(frame, {rule.column: converted}), RuleReport(
            "coerce", (rule.column,), changed=int(converted.notna().sum()), detail="string"
        )
    parser = _parser_for(rule, where)
    text = _as_text(series)
    outcome = _parse_distinct(text, parser)
    return _with_columns(frame, {rule.column: outcome.values}), RuleReport(
        "coerce",
        (rule.column,),
        changed=outcome.non_null,
        nulled=outcome.nulled,
        unparseable=outcome.failed,
        examples=outcome.examples,
        detail=rule.type,
    )


def map_values(
    frame: pd.DataFrame, rule: MapValuesRule, *, where: str = "map_values"
) -> tuple[pd.DataFrame, RuleReport]:
    """Replace exact values; unlisted values are kept (``default: keep``) or nulled (``default: null``)."""
    series = _require_text(frame, rule.column, where, "column")
    mapping = rule.values
    keep = rule.default == "keep"

    def replace(text: str) -> str | None:
        if text in mapping:
            return mapping[text]
        return text if keep else None

    outcome = _map_distinct(series, replace, TEXT_DTYPE)
    changed, nulled = _count_changes(series, outcome.values)
    return _with_columns(frame, {rule.column: outcome.values}), RuleReport(
        "map_values", (rule.column,), changed=changed, nulled=nulled
    )


def fill_nulls(
    frame: pd.DataFrame, rule: FillNullsRule, *, where: str = "fill_nulls"
) -> tuple[pd.DataFrame, RuleReport]:
    """Drop rows where the column is null, or fill its nulls with a constant, the median or the mode."""
    series = _require(frame, rule.column, where)
    missing = series.isna()
    count = int(missing.sum())
    if rule.strategy == "drop_row":
        return _filter_rows(frame, ~missing.to_numpy(dtype=bool)), RuleReport(
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
    return _with_columns(frame, {rule.column: filled}), RuleReport(
        "fill_nulls", (rule.column,), changed=count, detail=f"{rule.strategy}: {_example(value)}"
    )


def deduplicate_rows(
    frame: pd.DataFrame, rule: DeduplicateRule, *, where: str = "deduplicate"
) -> tuple[pd.DataFrame, RuleReport]:
    """Drop rows whose ``keys`` (all columns when None) repeat an earlier (``keep: first``) or later row.

    With ``normalize_keys`` text keys are compared NFKC-normalised, casefolded, with punctuation removed
    and spaces collapsed, so near-duplicates count as duplicates.
    """
    keys = list(rule.keys) if rule.keys is not None else [str(name) for name in frame.columns]
    for key in keys:
        _require(frame, key, where, "keys")
    compared = frame.loc[:, keys]
    if rule.normalize_keys:
        compared = compared.assign(
            **{
                key: _map_distinct(compared[key], normalize_key, TEXT_DTYPE).values
                for key in keys
                if logical_type(compared[key]) == "string"
            }
        )
    try:
        repeated = _duplicated(compared, rule.keep)
    except TypeError as exc:
        raise DatasetSpecError(f"{where}.keys: these columns cannot be compared ({exc})") from exc
    examples = tuple(
        _example(" | ".join("<null>" if pd.isna(value) else str(value) for value in row))
        for row in frame.loc[repeated, keys].head(MAX_EXAMPLES).itertuples(index=False)
    )
    return _filter_rows(frame, ~repeated.to_numpy(dtype=bool)), RuleReport(
        "deduplicate",
        tuple(keys),
        rows_dropped=int(repeated.sum()),
        examples=examples,
        detail="normalized keys" if rule.normalize_keys else "exact keys",
    )


def _duplicated(compared: pd.DataFrame, keep: Any) -> pd.Series:
    """``compared.duplicated(keep=keep)``, narrowed first: a row can only repeat another if each key
    column on its own does, so columns that rule out most rows shrink the rows the full comparison
    looks at (a unique-ish id column leaves only the few real candidates)."""
    candidates = np.arange(len(compared))
    hashed = _numeric_row_hashes(compared)
    if hashed is not None:
        shared = pd.Series(hashed, copy=False).duplicated(keep=False).to_numpy(dtype=bool)
        if shared.sum() <= len(candidates) // 2:
            candidates = candidates[shared]
    if len(compared.columns) > 1:
        try:
            for position in range(len(compared.columns)):
                column = compared.iloc[candidates, position] if len(candidates) < len(compared) else None
                if column is None:
                    column = compared.iloc[:, position]
                shared = column.duplicated(keep=False).to_numpy(dtype=bool)
                if shared.sum() > len(candidates) // 2:
                    break
                candidates = candidates[shared]
        except TypeError:
            candidates = np.arange(len(compared))
    if len(candidates) == len(compared):
        return compared.duplicated(keep=keep)
    repeated = np.zeros(len(compared), dtype=bool)
    if len(candidates):
        repeated[candidates] = compared.iloc[candidates].duplicated(keep=keep).to_numpy(dtype=bool)
    return pd.Series(repeated, index=compared.index)


_HASH_MULTIPLIER: Final = np.uint64(0x9E3779B97F4A7C15)
_NULL_BITS: Final = np.uint64(0x5BD1E9955BD1E995)


def _numeric_row_hashes(compared: pd.DataFrame) -> np.ndarray | None:
    """One 64-bit hash per row over the key columns that hash cheaply (numbers, dates, bools), or None
    when there are none. Equal rows get equal hashes, so rows whose hash is unique repeat no other row;
    collisions only leave extra candidates for the exact comparison."""
    hashed: np.ndarray | None = None
    for position in range(len(compared.columns)):
        bits = _value_bits(compared.iloc[:, position])
        if bits is None:
            continue
        mixed: np.ndarray = (bits ^ (bits >> np.uint64(31))) * _HASH_MULTIPLIER
        hashed = mixed if hashed is None else (hashed * _HASH_MULTIPLIER) ^ mixed
    return hashed


def _value_bits(series: pd.Series) -> np.ndarray | None:
    """The values of a number, bool or date column as float64 bit patterns, or None for other columns.
    Equal values give equal patterns (null and NaN share one, -0.0 is 0.0); unequal ones may too (big
    integers round), which only costs an exact comparison."""
    kind = logical_type(series)
    if kind in ("int", "float", "bool"):
        numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif kind == "date" and isinstance(series.dtype, pd.ArrowDtype):
        days = pc.cast(pa.array(series.array), pa.int32())
        numbers = pc.cast(days, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        return None
    numbers = numbers + 0.0  # a new array, and -0.0 becomes 0.0
    bits: np.ndarray = numbers.view(np.uint64)
    bits[np.isnan(numbers)] = _NULL_BITS
    return bits


def normalize_key(text: str) -> str:
    """The comparison form of a text key: NFKC, casefolded, punctuation removed, spaces collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _KEY_SPACE.sub(" ", _KEY_PUNCTUATION.sub(" ", folded)).strip()


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
            f"{_available(frame)}"
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
    changed, nulled = _count_changes(old, derived)
    return _with_columns(frame, {rule.column: derived}), RuleReport(
        "derive", (rule.column,), changed=changed, nulled=nulled, detail=rule.expression
    )


def mask_pii(
    frame: pd.DataFrame, rule: MaskPiiRule, *, salt: str = "", where: str = "mask_pii"
) -> tuple[pd.DataFrame, RuleReport]:
    """Mask or hash personal data. ``columns: auto`` treats every text column whose name or content
    shows one of ``kinds``; named columns are protected whatever they hold (unknown kinds fully masked)."""
    found: dict[str, PiiKind | None] = {}
    if rule.columns == "auto":
        for name in frame.columns:
            series = frame[name]
            if logical_type(series) == "string":
                kind = detect_pii_kind(str(name), sample_values(series))
                if kind in rule.kinds:
                    found[str(name)] = kind
    else:
        for name in rule.columns:
            series = _require(frame, name, where, "columns")
            kind = detect_pii_kind(name, sample_values(series))
            found[name] = kind if kind in rule.kinds else None
    updates: dict[str, pd.Series] = {}
    changed = 0
    for name, kind in found.items():
        text = _as_text(frame[name])
        # Masking ASCII values is vectorised, so it runs on the whole column: personal data is mostly
        # distinct, and factorising a million e-mails first cost more than masking them (0.4 s).
        fast = _mask_ascii(_text_array(text), kind) if rule.policy == "mask" else None
        if fast is not None:
            updates[name] = pd.Series(pd.arrays.ArrowStringArray(fast), index=text.index, name=text.name)
            changed += len(text) - int(text.isna().sum())
            continue
        codes, distinct = pd.factorize(text)
        values = [str(value) for value in distinct]
        protected = protect_values(values, kind, policy=rule.policy, salt=salt)
        updates[name] = _take(pd.array(protected, dtype=TEXT_DTYPE), codes, text)
        changed += int((codes >= 0).sum())
    kinds: dict[str, str] = {name: kind or "unknown" for name, kind in found.items()}
    return _with_columns(frame, updates), RuleReport(
        "mask_pii", tuple(found), changed=changed, detail=rule.policy, pii_kinds=kinds
    )


# Python's str.strip() removes these ASCII characters (str.isspace); Arrow's whitespace differs.
_ASCII_PY_SPACE: Final = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
_REVERSED_EMAIL: Final = r"(?s)^(?P<domain>[^@]+)@."  # reversed: domain, its '@', a non-empty local part
_MASK_SLICE: Final = 1 << 16


def _mask_ascii(values: pa.Array | pa.ChunkedArray, kind: PiiKind | None) -> pa.ChunkedArray | None:
    """:func:`ods.domain.pii.mask_value` of every value, vectorised, for ASCII e-mails, phones and bank
    cards (there, Arrow's byte-wise functions see exactly the characters Python does); None otherwise.
    Nulls stay null. Values are masked :data:`_MASK_SLICE` at a time, so the byte pass's temporaries
    (~20 bytes per byte of text) stay small whatever the column's length."""
    if kind not in ("email", "phone", "bank_card") or len(values) == 0:
        return None
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if not all(
        _is_text(chunk) and pc.all(pc.string_is_ascii(chunk)).as_py() is not False for chunk in chunks
    ):
        return None
    pieces = []
    for chunk in chunks:
        for start in range(0, len(chunk), _MASK_SLICE):
            piece = pc.cast(chunk.slice(start, _MASK_SLICE), pa.large_string())
            masked = _mask_ascii_values(piece, kind)
            if piece.null_count:
                masked = pc.if_else(pc.is_valid(piece), masked, pa.scalar(None, pa.large_string()))
            pieces.append(masked)
    return pa.chunked_array(pieces, type=pa.large_string())


def _mask_ascii_values(values: pa.Array, kind: PiiKind) -> pa.Array:
    text = pc.utf8_trim(values, characters=_ASCII_PY_SPACE)  # str.strip()
    generic = pa.scalar(GENERIC_MASK, pa.large_string())
    if kind == "email":
        # rpartition('@'): local part before the last '@'; both parts non-empty, else the generic mask.
        # Matched on the reversed text, where the domain comes first: that pattern needs no backtracking
        # (2x faster than matching the text itself).
        parts = pc.extract_regex(pc.ascii_reverse(text), pattern=_REVERSED_EMAIL)
        masked = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text, 0, 1),
            pc.ascii_reverse(parts.field("domain")),
            pa.scalar("***@", pa.large_string()),
        )
        return pc.if_else(pc.is_valid(parts), masked, generic)
    # every digit but the last 4 as '*'; 4 digits or fewer: the generic mask
    offsets, data = _string_buffers(text)
    start = int(offsets[0])
    data = data[start : int(offsets[-1])]
    offsets = offsets - start
    digit = (data - np.uint8(0x30)) < 10
    # seen[i]: digits before byte i (seen[offsets[k]]: before value k)
    seen = np.concatenate(([0], np.cumsum(digit, dtype=np.int32 if len(data) < 2**31 else np.int64)))
    total = seen[offsets[1:]] - seen[offsets[:-1]]
    last_hidden = np.repeat(seen[offsets[1:]] - 4, np.diff(offsets))  # per byte: its value's 4th-last digit
    hidden = digit & (seen[1:] <= last_hidden)
    masked_bytes = np.where(hidden, np.uint8(ord("*")), data)
    masked = pa.LargeStringArray.from_buffers(
        len(text), pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(masked_bytes)
    )
    return pc.if_else(pa.array(total <= 4), generic, masked)


# --- coercion parsers (each runs on the distinct stripped, non-blank texts) ---------------------------

Parser = Callable[[pd.Series], pd.api.extensions.ExtensionArray]


def _target_dtype(rule: CoerceRule) -> pd.ArrowDtype | None:
    if rule.type == "decimal" and rule.scale is not None:
        return pd.ArrowDtype(pa.decimal128(rule.precision, rule.scale))
    return None


def _parser_for(rule: CoerceRule, where: str) -> Parser:
    if rule.type == "int":
        return _parse_int
    if rule.type == "float":
        return lambda text: (
            pd.to_numeric(text, errors="coerce", dtype_backend="numpy_nullable").astype("Float64").array
        )
    if rule.type == "bool":
        return _parse_bool
    if rule.type == "decimal":
        assert rule.scale is not None
        return _decimal_parser(rule.precision, rule.scale)
    return _datetime_parser(rule, where)


def _parse_int(text: pd.Series) -> pd.api.extensions.ExtensionArray:
    number = pd.to_numeric(text, errors="coerce", dtype_backend="numpy_nullable")
    if number.dtype == "Int64":
        return number.array
    as_float = number.astype("Float64")
    integral = (as_float.notna() & (as_float % 1 == 0) & (as_float.abs() < 2.0**63)).fillna(False)
    result = as_float.where(integral).astype("Int64")
    # Beyond 2**53 a float is not exact: read plain digit strings again as Python ints.
    for position in np.flatnonzero((integral & (as_float.abs() >= 2.0**53)).to_numpy(dtype=bool)):
        digits = str(text.iloc[position])
        if _INT_TEXT.fullmatch(digits) and -(2**63) <= int(digits) < 2**63:
            result.iloc[position] = int(digits)
    return result.array


def _parse_bool(text: pd.Series) -> pd.api.extensions.ExtensionArray:
    def to_bool(value: str) -> bool | None:
        token = value.casefold()
        if token in TRUE_TOKENS:
            return True
        if token in FALSE_TOKENS:
            return False
        return None

    return pd.array([to_bool(str(value)) for value in text], dtype="boolean")


def _decimal_parser(precision: int, scale: int) -> Parser:
    quantum = Decimal(1).scaleb(-scale)

    def to_decimal(value: str) -> Decimal | None:
        try:
            number = Decimal(value)
            if not number.is_finite():
                return None
            rounded = number.quantize(quantum, rounding=ROUND_HALF_EVEN, context=_DECIMAL_CONTEXT)
        except InvalidOperation:
            return None
        return rounded if len(rounded.as_tuple().digits) <= precision else None

    dtype = pd.ArrowDtype(pa.decimal128(precision, scale))
    return lambda text: pd.array([to_decimal(str(value)) for value in text], dtype=dtype)


def _datetime_parser(rule: CoerceRule, where: str) -> Parser:
    formats = rule.formats or ("ISO8601",)

    def parse(text: pd.Series) -> pd.api.extensions.ExtensionArray:
        parsed: pd.Series | None = None
        for fmt in formats:
            try:
                attempt = pd.to_datetime(text, format=fmt, errors="coerce", utc=rule.utc)
            except (ValueError, TypeError) as exc:
                if "utc" in str(exc).lower():
                    raise DatasetSpecError(
                        f"{where}: the values carry different UTC offsets ({exc}); "
                        "set utc: true to convert them all to UTC"
                    ) from exc
                raise DatasetSpecError(f"{where}.formats: cannot use format {fmt!r}: {exc}") from exc
            attempt = attempt.astype(_microseconds(attempt.dtype))
            parsed = attempt if parsed is None else parsed.fillna(attempt)
        assert parsed is not None
        if rule.type == "timestamp":
            return parsed.array
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_localize(None)
        days = pa.array(parsed.dt.floor("D"), from_pandas=True)
        return pd.array(pc.cast(days, pa.date32()), dtype=pd.ArrowDtype(pa.date32()))

    return parse


def _microseconds(dtype: object) -> str | pd.DatetimeTZDtype:
    if isinstance(dtype, pd.DatetimeTZDtype):
        return pd.DatetimeTZDtype(unit="us", tz=dtype.tz)
    return "datetime64[us]"


# --- shared helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    values: pd.Series
    non_null: int
    nulled: int
    failed: int
    examples: tuple[str, ...]


def _map_distinct(series: pd.Series, function: Callable[[Any], object], dtype: object) -> _Outcome:
    """Apply ``function`` once per distinct non-null value; a None result for a non-null input counts
    as failed (with examples in order of first appearance)."""
    codes, distinct = pd.factorize(series)
    mapped = pd.array([function(value) for value in distinct], dtype=dtype)
    return _outcome(mapped, codes, distinct, series, failed=pd.isna(mapped))


def _parse_distinct(text: pd.Series, parser: Parser) -> _Outcome:
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
) -> _Outcome:
    counts = np.bincount(codes[codes >= 0], minlength=len(distinct))
    became_null = np.asarray(pd.isna(mapped), dtype=bool)
    failed = np.asarray(failed, dtype=bool)
    examples = tuple(_example(value) for value in distinct[failed][:MAX_EXAMPLES])
    values = _take(mapped, codes, original)
    return _Outcome(
        values=values,
        non_null=int(counts[~became_null].sum()),
        nulled=int(counts[became_null].sum()),
        failed=int(counts[failed].sum()),
        examples=examples,
    )


def _take(mapped: pd.api.extensions.ExtensionArray, codes: np.ndarray, like: pd.Series) -> pd.Series:
    return pd.Series(mapped.take(codes, allow_fill=True), index=like.index, name=like.name)


def _count_changes(old: pd.Series | None, new: pd.Series) -> tuple[int, int]:
    """(values that became a different non-null value, non-null values that became null)."""
    new_null = new.isna().to_numpy(dtype=bool)
    if old is None:
        return int((~new_null).sum()), 0
    old_null = old.isna().to_numpy(dtype=bool)
    both = ~old_null & ~new_null
    if old.dtype == new.dtype:
        differs = old.ne(new).to_numpy(dtype=bool, na_value=False)
    else:
        differs = (old.astype(TEXT_DTYPE) != new.astype(TEXT_DTYPE)).to_numpy(dtype=bool, na_value=True)
    changed = int((both & differs).sum()) + int((old_null & ~new_null).sum())
    return changed, int((~old_null & new_null).sum())


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


def _with_columns(frame: pd.DataFrame, updates: dict[str, pd.Series]) -> pd.DataFrame:
    """A new frame with ``updates`` replacing or appending columns (the input frame is untouched)."""
    if not updates:
        return frame
    result = frame.copy(deep=False)
    for name, values in updates.items():
        result[name] = values
    return result


def _filter_rows(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """``frame.loc[keep]`` for a boolean ``keep``, filtering column by column: Arrow columns then use
    Arrow's filter, several times faster than the take ``.loc`` does."""
    if keep.all():
        return frame.copy(deep=False)
    arrays = {position: frame.iloc[:, position].array[keep] for position in range(frame.shape[1])}
    result = pd.DataFrame(arrays, index=frame.index[keep], copy=False)
    result.columns = frame.columns
    return result


def _text_array(series: pd.Series) -> pa.Array | pa.ChunkedArray:
    """The column's Arrow values as they are (chunks are kept: combining them would copy the column)."""
    return pa.array(_as_text(series).array)


def _as_text(series: pd.Series) -> pd.Series:
    return series if series.dtype == TEXT_DTYPE else series.astype(TEXT_DTYPE)


def _count_true(mask: pa.Array) -> int:
    total = pc.sum(mask.cast(pa.int64())).as_py()
    return int(total or 0)


def _require(frame: pd.DataFrame, name: str, where: str, field_name: str = "column") -> pd.Series:
    if name not in frame.columns:
        close = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DatasetSpecError(f"{where}.{field_name}: column {name!r} not found{hint}; {_available(frame)}")
    series: pd.Series = frame[name]
    return series


def _require_text(frame: pd.DataFrame, name: str, where: str, field_name: str) -> pd.Series:
    series = _require(frame, name, where, field_name)
    kind = logical_type(series)
    if kind != "string":
        raise DatasetSpecError(
            f"{where}.{field_name}: column {name!r} holds {kind} values and this rule works on text; "
            "coerce it to string first"
        )
    return series


def _available(frame: pd.DataFrame) -> str:
    names = [str(name) for name in frame.columns]
    shown = ", ".join(repr(name) for name in names[:40])
    more = f", ... ({len(names)} in all)" if len(names) > 40 else ""
    return f"columns at this point: {shown}{more}" if names else "the table has no columns left"


def _names(names: Sequence[Hashable]) -> str:
    label = "column" if len(names) == 1 else "columns"
    return f"{label} {', '.join(repr(str(name)) for name in names)}"


def _example(value: object) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…"
