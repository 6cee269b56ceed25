"""The cleaning rules a spec's steps use: one model per rule (a step holds one, see ``items``)."""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import Field, field_validator, model_validator

from ods.domain.dataset_spec.base import (
    PII_KINDS,
    LogicalType,
    PiiKind,
    Scalar,
    SpecModel,
    check_pattern,
    check_unique,
)


class NormalizeRule(SpecModel):
    """Tidy text: Unicode form, surrounding characters, runs of spaces, letter case, empty -> null."""

    columns: Literal["all"] | tuple[str, ...] = Field(description="Text columns, or 'all' text columns.")
    trim: bool = True
    collapse_spaces: bool = True
    case: Literal["lower", "upper", "title"] | None = None
    unicode: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFC"
    empty_as_null: bool = True
    strip_chars: str | None = Field(default=None, description="Characters removed from both ends.")

    @field_validator("columns")
    @classmethod
    def _some_columns(cls, value: Literal["all"] | tuple[str, ...]) -> Literal["all"] | tuple[str, ...]:
        if not value:
            raise ValueError("list at least one column, or write 'all' for every text column")
        return value


class ExtractRule(SpecModel):
    """Keep the first capture group of ``pattern`` (the whole match without a group); no match -> null."""

    column: str
    pattern: str
    into: str | None = Field(default=None, description="Target column; defaults to overwriting column.")

    _pattern = field_validator("pattern")(check_pattern)


class CoerceRule(SpecModel):
    """Convert a column to a logical type; values that do not parse become null and are counted."""

    column: str
    type: LogicalType
    formats: tuple[str, ...] = Field(
        default=(), description="date/timestamp: strptime formats tried in order (default ISO 8601)."
    )
    scale: int | None = Field(default=None, ge=0, le=38, description="decimal: digits after the point.")
    precision: int = Field(default=38, ge=1, le=38, description="decimal: total significant digits.")
    utc: bool = Field(default=False, description="timestamp: convert values with offsets to UTC.")

    @model_validator(mode="after")
    def _options_fit_type(self) -> CoerceRule:
        if self.formats and self.type not in ("date", "timestamp"):
            raise ValueError(f"formats only apply to type date or timestamp, not {self.type!r}")
        if self.type == "decimal" and self.scale is None:
            raise ValueError("type decimal needs a scale (digits after the decimal point), e.g. scale: 2")
        if self.type != "decimal" and self.scale is not None:
            raise ValueError(f"scale only applies to type decimal, not {self.type!r}")
        if self.scale is not None and self.scale > self.precision:
            raise ValueError(f"scale {self.scale} is larger than precision {self.precision}")
        if self.utc and self.type != "timestamp":
            raise ValueError("utc only applies to type timestamp")
        return self


class MapValuesRule(SpecModel):
    """Replace exact text values; others are kept (default: keep) or nulled (default: null)."""

    column: str
    values: dict[str, str | None] = Field(min_length=1)
    default: Literal["keep", "null"] = "keep"

    @field_validator("default", mode="before")
    @classmethod
    def _yaml_null(cls, value: object) -> object:
        return "null" if value is None else value  # `default: null` reads as None in YAML


class FillNullsRule(SpecModel):
    """Fill or drop the nulls of one column."""

    column: str
    strategy: Literal["drop_row", "constant", "median", "mode"]
    value: Scalar | None = None

    @model_validator(mode="after")
    def _value_fits_strategy(self) -> FillNullsRule:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy constant needs a value, e.g. value: unknown")
        if self.strategy != "constant" and self.value is not None:
            raise ValueError(f"value only applies to strategy constant, not {self.strategy!r}")
        return self


class DeduplicateRule(SpecModel):
    """Drop repeated rows, comparing ``keys`` (all columns when null).

    ``normalize_keys`` compares text keys casefolded, punctuation-stripped and space-collapsed, so
    near-duplicates ("The  Raven." / "the raven") count as the same row.
    """

    keys: tuple[str, ...] | None = Field(default=None, min_length=1)
    keep: Literal["first", "last"] = "first"
    normalize_keys: bool = False

    @field_validator("keys")
    @classmethod
    def _keys_unique(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return check_unique(value, "keys")


class DeriveRule(SpecModel):
    """Compute a column with a pandas expression over the other columns (``DataFrame.eval``)."""

    column: str
    expression: str = Field(min_length=1)

    @field_validator("expression")
    @classmethod
    def _no_dunder(cls, value: str) -> str:
        if "__" in value:
            raise ValueError(
                "double underscores are not allowed in expressions (no access to Python internals)"
            )
        return value


class MaskPiiRule(SpecModel):
    """Mask or hash personal data, in named columns or in every text column detected as PII."""

    columns: Literal["auto"] | tuple[str, ...] = "auto"
    kinds: tuple[PiiKind, ...] = Field(default=PII_KINDS, min_length=1)
    policy: Literal["mask", "hash"] = "mask"


Rule: TypeAlias = (
    NormalizeRule
    | ExtractRule
    | CoerceRule
    | MapValuesRule
    | FillNullsRule
    | DeduplicateRule
    | DeriveRule
    | MaskPiiRule
)
