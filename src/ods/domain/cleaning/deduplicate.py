"""The ``deduplicate`` rule: drop rows whose keys repeat, narrowing the exact comparison to the rows
that can repeat another (cheap per-column and hashed checks first)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ods.domain.cleaning.distinct import map_distinct
from ods.domain.cleaning.frames import TEXT_DTYPE, filter_rows, require_column
from ods.domain.cleaning.report import MAX_EXAMPLES, RuleReport, example_text
from ods.domain.dataset_spec import DatasetSpecError, DeduplicateRule
from ods.domain.profiling import logical_type

_KEY_PUNCTUATION: Final = re.compile(r"[^\w\s]|_")
_KEY_SPACE: Final = re.compile(r"\s+")


def deduplicate_rows(
    frame: pd.DataFrame, rule: DeduplicateRule, *, where: str = "deduplicate"
) -> tuple[pd.DataFrame, RuleReport]:
    """Drop rows whose ``keys`` (all columns when None) repeat an earlier (``keep: first``) or later row.

    With ``normalize_keys`` text keys are compared NFKC-normalised, casefolded, with punctuation removed
    and spaces collapsed, so near-duplicates count as duplicates.
    """
    keys = list(rule.keys) if rule.keys is not None else [str(name) for name in frame.columns]
    for key in keys:
        require_column(frame, key, where, "keys")
    compared = frame.loc[:, keys]
    if rule.normalize_keys:
        compared = compared.assign(
            **{
                key: map_distinct(compared[key], normalize_key, TEXT_DTYPE).values
                for key in keys
                if logical_type(compared[key]) == "string"
            }
        )
    try:
        repeated = _duplicated(compared, rule.keep)
    except TypeError as exc:
        raise DatasetSpecError(f"{where}.keys: these columns cannot be compared ({exc})") from exc
    examples = tuple(
        example_text(" | ".join("<null>" if pd.isna(value) else str(value) for value in row))
        for row in frame.loc[repeated, keys].head(MAX_EXAMPLES).itertuples(index=False)
    )
    return filter_rows(frame, ~repeated.to_numpy(dtype=bool)), RuleReport(
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
