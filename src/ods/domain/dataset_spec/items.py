"""The list items of a spec: a step holds exactly one cleaning rule and an expectation exactly one
expectation, each written ``- name: {params}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SerializerFunctionWrapHandler, model_serializer, model_validator

from ods.domain.dataset_spec.base import SpecModel
from ods.domain.dataset_spec.expectations import (
    BetweenExpectation,
    ColumnTypeExpectation,
    ExpectationParams,
    InSetExpectation,
    NotNullExpectation,
    RegexExpectation,
    RowCountExpectation,
    UniqueExpectation,
)
from ods.domain.dataset_spec.rules import (
    CoerceRule,
    DeduplicateRule,
    DeriveRule,
    ExtractRule,
    FillNullsRule,
    MapValuesRule,
    MaskPiiRule,
    NormalizeRule,
    Rule,
)


def _one_key_mapping(data: Any, allowed: tuple[str, ...], what: str, example: str) -> Any:
    """Check that a list item is ``{name: params}`` with a known name; ``{name: null}`` means defaults."""
    if not isinstance(data, Mapping) or len(data) != 1:
        raise ValueError(f"each {what} is a one-key mapping {{name: params}}, e.g. '- {example}'")
    ((key, params),) = data.items()
    if key not in allowed:
        raise ValueError(f"unknown {what} {key!r}; expected one of: {', '.join(allowed)}")
    return {key: {} if params is None else params}


class OneOf(SpecModel):
    """A list item that is exactly one of the fields of its subclass: ``{name: params}``."""

    item_kind: ClassVar[str] = "item"
    item_example: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        return _one_key_mapping(data, tuple(cls.model_fields), cls.item_kind, cls.item_example)

    @model_serializer(mode="wrap")
    def _as_one_key_mapping(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {self.name: dumped[self.name]}

    @property
    def name(self) -> str:
        """The rule or expectation name, as written in the spec."""
        return next(key for key in type(self).model_fields if getattr(self, key) is not None)


class Step(OneOf):
    """One cleaning step: ``- coerce: {column: year, type: int}``."""

    item_kind: ClassVar[str] = "rule"
    item_example: ClassVar[str] = "coerce: {column: year, type: int}"

    normalize: NormalizeRule | None = None
    extract: ExtractRule | None = None
    coerce: CoerceRule | None = None
    map_values: MapValuesRule | None = None
    fill_nulls: FillNullsRule | None = None
    deduplicate: DeduplicateRule | None = None
    derive: DeriveRule | None = None
    mask_pii: MaskPiiRule | None = None

    @property
    def rule(self) -> Rule:
        """The parameters of this step's rule."""
        value: Rule = getattr(self, self.name)
        return value


RULE_NAMES: tuple[str, ...] = tuple(Step.model_fields)


class Expectation(OneOf):
    """One expectation: ``- not_null: {column: Identifier}``."""

    item_kind: ClassVar[str] = "expectation"
    item_example: ClassVar[str] = "not_null: {column: Identifier}"

    not_null: NotNullExpectation | None = None
    unique: UniqueExpectation | None = None
    between: BetweenExpectation | None = None
    in_set: InSetExpectation | None = None
    regex: RegexExpectation | None = None
    row_count: RowCountExpectation | None = None
    column_type: ColumnTypeExpectation | None = None

    @property
    def params(self) -> ExpectationParams:
        """The parameters of this expectation."""
        value: ExpectationParams = getattr(self, self.name)
        return value


EXPECTATION_NAMES: tuple[str, ...] = tuple(Expectation.model_fields)
