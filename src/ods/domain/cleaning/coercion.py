"""The ``coerce`` rule and its parsers; each parser runs on the distinct stripped, non-blank texts."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ods.domain.cleaning.distinct import Parser, parse_distinct
from ods.domain.cleaning.frames import TEXT_DTYPE, as_text, require_column, with_columns
from ods.domain.cleaning.report import RuleReport
from ods.domain.dataset_spec import CoerceRule, DatasetSpecError
from ods.domain.profiling import logical_type

TRUE_TOKENS: Final = frozenset({"true", "t", "yes", "y", "1", "是"})
FALSE_TOKENS: Final = frozenset({"false", "f", "no", "n", "0", "否"})

_INT_TEXT: Final = re.compile(r"[+-]?\d+")
_DECIMAL_CONTEXT: Final = Context(prec=80)


def coerce_column(
    frame: pd.DataFrame, rule: CoerceRule, *, where: str = "coerce"
) -> tuple[pd.DataFrame, RuleReport]:
    """Convert a column to ``rule.type``. Blank text becomes null; values that do not parse become null
    and are counted as unparseable. ``changed`` counts the converted (non-null) values."""
    series = require_column(frame, rule.column, where)
    target = _target_dtype(rule)
    if logical_type(series) == rule.type and (target is None or series.dtype == target):
        return frame, RuleReport("coerce", (rule.column,), detail=f"already {rule.type}")
    if rule.type == "string":
        converted = series.astype(TEXT_DTYPE)
        return with_columns(frame, {rule.column: converted}), RuleReport(
            "coerce", (rule.column,), changed=int(converted.notna().sum()), detail="string"
        )
    parser = _parser_for(rule, where)
    text = as_text(series)
    outcome = parse_distinct(text, parser)
    report = outcome.report("coerce", (rule.column,), detail=rule.type)
    return with_columns(frame, {rule.column: outcome.values}), report


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
