"""copy_fields: a dataclass or pydantic model filled from another object's same-named attributes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from ods.domain.copied_fields import copy_fields


@dataclass(frozen=True)
class Row:
    id: int
    name: str
    size: int


@dataclass(frozen=True)
class Plan:
    name: str
    size: int


class Summary(BaseModel):
    row_id: int
    name: str
    size: int
    note: str = ""


def test_same_named_fields_are_copied_and_values_given_win() -> None:
    row = Row(id=7, name="sales", size=3)

    assert copy_fields(Plan, row) == Plan(name="sales", size=3)
    assert copy_fields(Plan, row, size=4) == Plan(name="sales", size=4)
    assert copy_fields(Summary, row, row_id=row.id, note="n") == Summary(
        row_id=7, name="sales", size=3, note="n"
    )


def test_a_field_the_source_lacks_must_be_given() -> None:
    with pytest.raises(AttributeError, match="row_id"):
        copy_fields(Summary, Row(id=7, name="sales", size=3))


def test_a_value_for_no_field_is_refused() -> None:
    with pytest.raises(TypeError, match="Summary has no field rowid"):
        copy_fields(Summary, Row(id=7, name="sales", size=3), rowid=7)
