"""The raw table: where it is and how to read it (``source``), and which of its columns to keep
(``columns``, applied before any step)."""

from __future__ import annotations

import codecs

from pydantic import Field, field_validator

from ods.domain.dataset_spec.base import SourceFormat, SpecModel, check_unique

_DELIMITER_ALIASES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}


class SourceSpec(SpecModel):
    """Where the raw table is and how to read it; ``auto`` values are detected from the bytes."""

    uri: str = Field(min_length=1, description="Local path or object-store URI; the flow resolves it.")
    format: SourceFormat = "auto"
    delimiter: str = Field(default="auto", description="'auto' (sniffed) or a single character.")
    encoding: str = Field(default="auto", description="'auto' (BOM, UTF-8, then detection) or a codec.")
    sheet: str | int | None = Field(default=None, description="Excel sheet name or 0-based index.")
    null_values: tuple[str, ...] = Field(
        default=(), description="Extra CSV cell values read as null (empty cells always are)."
    )

    @field_validator("delimiter")
    @classmethod
    def _single_character(cls, value: str) -> str:
        value = _DELIMITER_ALIASES.get(value, value)
        if value != "auto" and len(value) != 1:
            raise ValueError("delimiter must be 'auto' or a single character such as ',', ';' or '\\t'")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if value != "auto":
            try:
                codecs.lookup(value)
            except LookupError as exc:
                raise ValueError(
                    f"unknown encoding {value!r}; use 'auto' or a codec such as utf-8, cp1252, utf-16, gb18030"
                ) from exc
        return value


class ColumnsSpec(SpecModel):
    """Column selection and renaming, applied before any step (select uses the source's names)."""

    select: tuple[str, ...] | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    drop_empty: bool = Field(default=True, description="Drop columns that hold no value at all.")
    max_null_fraction: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop columns whose share of nulls is above this."
    )

    @field_validator("select")
    @classmethod
    def _select_unique(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return check_unique(value, "select")

    @field_validator("rename")
    @classmethod
    def _targets_unique(cls, value: dict[str, str]) -> dict[str, str]:
        targets = list(value.values())
        repeated = sorted({target for target in targets if targets.count(target) > 1})
        if repeated:
            raise ValueError(f"rename gives several columns the name {', '.join(map(repr, repeated))}")
        return value
