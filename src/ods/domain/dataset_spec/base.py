"""What every part of the dataset spec shares: the logical and PII types, the error, the strict
immutable model, its validators, and field paths."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from ods.errors import OdsError

LogicalType: TypeAlias = Literal["int", "float", "decimal", "bool", "date", "timestamp", "string"]
PiiKind: TypeAlias = Literal["email", "phone", "id_card", "bank_card"]
SourceFormat: TypeAlias = Literal["auto", "csv", "tsv", "jsonl", "parquet", "excel"]
Bound: TypeAlias = int | float | date | datetime | str
Scalar: TypeAlias = bool | int | float | str

PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "id_card", "bank_card")
LOGICAL_TYPES: tuple[LogicalType, ...] = ("int", "float", "decimal", "bool", "date", "timestamp", "string")

Path_: TypeAlias = tuple[str | int, ...]


class DatasetSpecError(OdsError):
    """A dataset spec is invalid, or does not fit the table it is applied to.

    ``problems`` holds one line per problem; ``str(error)`` joins them.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class SpecModel(BaseModel):
    """Immutable, and strict about unknown keys so a typo is an error instead of a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_pattern(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


def check_unique(values: tuple[str, ...] | None, what: str) -> tuple[str, ...] | None:
    if values is not None:
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"{what} lists {', '.join(map(repr, repeated))} more than once")
    return values


def format_path(path: Path_) -> str:
    """``('steps', 2, 'coerce', 'type')`` -> ``'steps[2].coerce.type'``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"
