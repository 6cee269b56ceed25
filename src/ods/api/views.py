"""Answers filled from the catalog's records: a response model takes each of its fields from the record's
attribute of the same name, so a route spells out only the fields that the record names differently or
does not hold."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

ViewT = TypeVar("ViewT", bound=BaseModel)


def view_of(model: type[ViewT], record: object, **overrides: Any) -> ViewT:
    """``model`` with each field from ``record``'s attribute of that name, or from ``overrides`` where given;
    validated as its constructor validates (a record's tuples become the model's lists). Where every field
    is on the record, ``model.model_validate(record, from_attributes=True)`` says the same."""
    values = {name: getattr(record, name) for name in model.model_fields if hasattr(record, name)}
    return model.model_validate({**values, **overrides})
