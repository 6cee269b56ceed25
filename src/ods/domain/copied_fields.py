"""A record or model filled from the same-named attributes of another object (a catalog record, a plan).

A flow result or summary often repeats most fields of the record it describes; the call then names only
the fields that differ (renamed, derived, or taken from elsewhere).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


def copy_fields(kind: type[T], source: object, **values: Any) -> T:
    """``kind`` (a dataclass or a pydantic model) filled from the attributes of ``source`` that bear its
    field names; ``values`` are the fields ``source`` does not hold as they are."""
    names = _field_names(kind)
    unknown = sorted(set(values) - set(names))
    if unknown:  # a pydantic model would ignore them silently
        raise TypeError(f"{kind.__name__} has no field {', '.join(unknown)}")
    held = {name: getattr(source, name) for name in names if name not in values}
    return kind(**held, **values)


def _field_names(kind: Any) -> tuple[str, ...]:  # a dataclass or pydantic model class
    if issubclass(kind, BaseModel):
        return tuple(kind.model_fields)
    return tuple(field.name for field in dataclasses.fields(kind))
