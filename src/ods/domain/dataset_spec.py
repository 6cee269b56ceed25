"""The declarative dataset spec: one YAML file says how a raw table becomes a registered dataset.

A spec names the source, the columns to keep, an ordered list of cleaning steps, the expectations the
result must meet and free-form training hints. Every problem is reported with the file, the line and the
field path (``bl_books.yaml line 14, steps[2].coerce.type: ...``) so it can be fixed without guessing.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, ClassVar, Literal, TypeAlias, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ods.domain.hashing import sha256_bytes
from ods.domain.names import name_problem
from ods.errors import OdsError

LogicalType: TypeAlias = Literal["int", "float", "decimal", "bool", "date", "timestamp", "string"]
PiiKind: TypeAlias = Literal["email", "phone", "id_card", "bank_card"]
SourceFormat: TypeAlias = Literal["auto", "csv", "tsv", "jsonl", "parquet", "excel"]
Bound: TypeAlias = int | float | date | datetime | str
Scalar: TypeAlias = bool | int | float | str

PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "id_card", "bank_card")
LOGICAL_TYPES: tuple[LogicalType, ...] = ("int", "float", "decimal", "bool", "date", "timestamp", "string")
_DELIMITER_ALIASES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}
_MAX_REPORTED_PROBLEMS = 5

Path_: TypeAlias = tuple[str | int, ...]


class DatasetSpecError(OdsError):
    """A dataset spec is invalid, or does not fit the table it is applied to.

    ``problems`` holds one line per problem; ``str(error)`` joins them.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class _SpecModel(BaseModel):
    """Immutable, and strict about unknown keys so a typo is an error instead of a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_pattern(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


def _check_unique(values: tuple[str, ...] | None, what: str) -> tuple[str, ...] | None:
    if values is not None:
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"{what} lists {', '.join(map(repr, repeated))} more than once")
    return values


# --- source and columns ------------------------------------------------------------------------------


class SourceSpec(_SpecModel):
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


class ColumnsSpec(_SpecModel):
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
        return _check_unique(value, "select")

    @field_validator("rename")
    @classmethod
    def _targets_unique(cls, value: dict[str, str]) -> dict[str, str]:
        targets = list(value.values())
        repeated = sorted({target for target in targets if targets.count(target) > 1})
        if repeated:
            raise ValueError(f"rename gives several columns the name {', '.join(map(repr, repeated))}")
        return value


# --- cleaning rules ----------------------------------------------------------------------------------


class NormalizeRule(_SpecModel):
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


class ExtractRule(_SpecModel):
    """Keep the first capture group of ``pattern`` (the whole match without a group); no match -> null."""

    column: str
    pattern: str
    into: str | None = Field(default=None, description="Target column; defaults to overwriting column.")

    _pattern = field_validator("pattern")(_check_pattern)


class CoerceRule(_SpecModel):
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


class MapValuesRule(_SpecModel):
    """Replace exact text values; others are kept (default: keep) or nulled (default: null)."""

    column: str
    values: dict[str, str | None] = Field(min_length=1)
    default: Literal["keep", "null"] = "keep"

    @field_validator("default", mode="before")
    @classmethod
    def _yaml_null(cls, value: object) -> object:
        return "null" if value is None else value  # `default: null` reads as None in YAML


class FillNullsRule(_SpecModel):
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


class DeduplicateRule(_SpecModel):
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
        return _check_unique(value, "keys")


class DeriveRule(_SpecModel):
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


class MaskPiiRule(_SpecModel):
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


def _one_key_mapping(data: Any, allowed: tuple[str, ...], what: str, example: str) -> Any:
    """Check that a list item is ``{name: params}`` with a known name; ``{name: null}`` means defaults."""
    if not isinstance(data, Mapping) or len(data) != 1:
        raise ValueError(f"each {what} is a one-key mapping {{name: params}}, e.g. '- {example}'")
    ((key, params),) = data.items()
    if key not in allowed:
        raise ValueError(f"unknown {what} {key!r}; expected one of: {', '.join(allowed)}")
    return {key: {} if params is None else params}


class _OneOf(_SpecModel):
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


class Step(_OneOf):
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


# --- expectations ------------------------------------------------------------------------------------


class _ColumnExpectation(_SpecModel):
    column: str
    mostly: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of rows that must pass.")


class NotNullExpectation(_ColumnExpectation):
    """Values are present."""


class UniqueExpectation(_ColumnExpectation):
    """Values do not repeat."""


class BetweenExpectation(_ColumnExpectation):
    """Values lie within ``min``..``max`` (inclusive; either bound may be left out)."""

    min: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _bounds(self) -> BetweenExpectation:
        if self.min is None and self.max is None:
            raise ValueError("between needs min, max or both")
        numeric = (int, float)
        if isinstance(self.min, numeric) and isinstance(self.max, numeric) and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class InSetExpectation(_ColumnExpectation):
    """Values are one of ``values``."""

    values: tuple[Scalar, ...] = Field(min_length=1)


class RegexExpectation(_ColumnExpectation):
    """Text values match ``pattern``."""

    pattern: str

    _pattern = field_validator("pattern")(_check_pattern)


class RowCountExpectation(_SpecModel):
    """The dataset has between ``min`` and ``max`` rows."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountExpectation:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class ColumnTypeExpectation(_SpecModel):
    """The column has this logical type after cleaning."""

    column: str
    type: LogicalType


ExpectationParams: TypeAlias = (
    NotNullExpectation
    | UniqueExpectation
    | BetweenExpectation
    | InSetExpectation
    | RegexExpectation
    | RowCountExpectation
    | ColumnTypeExpectation
)


class Expectation(_OneOf):
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

_NUMERIC_TYPES: tuple[LogicalType, ...] = ("int", "float", "decimal")
_TEMPORAL_TYPES: tuple[LogicalType, ...] = ("date", "timestamp")
_TYPE_WORDS: dict[str, str] = {
    "int": "whole numbers",
    "float": "numbers",
    "decimal": "decimal numbers",
    "bool": "true/false values",
    "date": "dates",
    "timestamp": "timestamps",
    "string": "text",
}


def _needed_types(params: ExpectationParams) -> tuple[tuple[LogicalType, ...], str, str] | None:
    """The logical types a column needs for ``params`` to be checkable, in words, and the coerce type to
    suggest; None when any type will do."""
    if isinstance(params, BetweenExpectation):
        bounds = [bound for bound in (params.min, params.max) if bound is not None]
        if any(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in bounds):
            return _NUMERIC_TYPES, "a numeric column", "int, float or decimal"
        if any(isinstance(bound, date) for bound in bounds):  # datetime is a date too
            return _TEMPORAL_TYPES, "a date or timestamp column", "date or timestamp"
        return (*_TEMPORAL_TYPES, "string"), "a date, timestamp or text column", "date or timestamp"
    if isinstance(params, RegexExpectation):
        return ("string",), "a text column", "string"
    return None


def expectation_type_problem(expectation: Expectation, column_type: str) -> str | None:
    """Why ``expectation`` cannot be checked on a column of logical type ``column_type`` (as it is after
    cleaning), with the ``coerce`` step that fixes it; None when the type fits, or is not one of ours.

    ``between`` with numbers compares numbers: on a text column every comparison fails at once and no
    single row can be blamed, so this is said instead of reporting a failure that quarantines nothing.
    """
    column = getattr(expectation.params, "column", None)
    needed = _needed_types(expectation.params)
    if column is None or needed is None or column_type not in _TYPE_WORDS:
        return None
    types, words, suggested = needed
    if column_type in types:
        return None
    return (
        f"needs {words}, but {column!r} is {_TYPE_WORDS[column_type]} ({column_type}) after cleaning; "
        f"add a `coerce` step for {column!r} (type {suggested}) before validating"
    )


def _type_after_steps(steps: tuple[Step, ...], column: str) -> tuple[LogicalType, int] | None:
    """The logical type ``column`` surely has after the cleaning steps and the step that gives it: known
    when the last step writing it is a ``coerce`` (or an ``extract``, which writes text); else None."""
    known: tuple[LogicalType, int] | None = None
    for index, step in enumerate(steps):
        rule = step.rule
        if isinstance(rule, CoerceRule) and rule.column == column:
            known = (rule.type, index)
        elif isinstance(rule, ExtractRule) and (rule.into or rule.column) == column:
            known = ("string", index)
        elif isinstance(rule, DeriveRule | MapValuesRule) and rule.column == column:
            known = None
    return known


def _selected_columns(spec: DatasetSpec) -> set[str] | None:
    """The columns the cleaned table can have when the spec selects its columns (renamed, plus the
    columns steps write), or None when the source's columns decide."""
    if spec.columns.select is None:
        return None
    columns = {spec.columns.rename.get(name, name) for name in spec.columns.select}
    for step in spec.steps:
        rule = step.rule
        if isinstance(rule, ExtractRule) and rule.into:
            columns.add(rule.into)
        elif isinstance(rule, DeriveRule):
            columns.add(rule.column)
    return columns


def _spec_problems(spec: DatasetSpec) -> list[str]:
    """Expectations the spec itself makes impossible to check, each located in the file, found at load
    time before any data is read: a column the selection leaves out, or a type the steps give a column
    that the expectation cannot use (``between`` with numbers on a column coerced to string)."""
    problems = []
    selected = _selected_columns(spec)
    for index, expectation in enumerate(spec.expectations):
        column = getattr(expectation.params, "column", None)
        if selected is not None and column is not None and column not in selected:
            problems.append(
                f"{spec.where('expectations', index, expectation.name, 'column')}: column {column!r} is not "
                f"among the columns the spec keeps ({', '.join(sorted(selected))}); "
                "select it under columns.select, or name a kept column"
            )
            continue
        needed = _needed_types(expectation.params)
        known = _type_after_steps(spec.steps, column) if column is not None and needed else None
        if known is None or needed is None or known[0] in needed[0]:
            continue
        column_type, step = known
        problems.append(
            f"{spec.where('expectations', index, expectation.name, 'column')}: {expectation.name}({column}) "
            f"needs {needed[1]}, but {spec.where('steps', step)} makes {column!r} {_TYPE_WORDS[column_type]} "
            f"({column_type}); coerce it to {needed[2]} instead, or drop the expectation"
        )
    return problems


# --- the spec ----------------------------------------------------------------------------------------


class DatasetSpec(_SpecModel):
    """A validated dataset spec. Build it with :func:`parse_dataset_spec`."""

    name: str = Field(
        description="Dataset name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter."
    )
    description: str = ""
    source: SourceSpec
    columns: ColumnsSpec = Field(default_factory=ColumnsSpec)
    steps: tuple[Step, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    train: dict[str, Any] | None = Field(
        default=None, description="Free-form hints passed on in the dataset.registered event."
    )

    _source_name: str = PrivateAttr(default="<spec>")
    _lines: dict[Path_, int] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        problem = name_problem("dataset", value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the validated spec: key order, layout and defaults written
        out or left implicit do not change it."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return sha256_bytes(canonical.encode("utf-8"))

    def where(self, *path: str | int) -> str:
        """``'bl_books.yaml line 14, steps[2].coerce.column'``: where ``path`` is written in the spec,
        for messages about problems found only once the spec meets the data."""
        line = None
        for depth in range(len(path), -1, -1):
            line = self._lines.get(path[:depth])
            if line is not None:
                break
        located = self._source_name if line is None else f"{self._source_name} line {line}"
        return f"{located}, {format_path(path)}" if path else located


def format_path(path: Path_) -> str:
    """``('steps', 2, 'coerce', 'type')`` -> ``'steps[2].coerce.type'``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


# --- parsing with line numbers -----------------------------------------------------------------------


def parse_dataset_spec(text: str, source_name: str = "<spec>") -> DatasetSpec:
    """Parse and validate a YAML dataset spec; raise :class:`DatasetSpecError` naming file, line, field."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_duplicate_keys(root, source_name)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source_name} line {mark.line + 1}, column {mark.column + 1}" if mark else source_name
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise DatasetSpecError(f"{where}: invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise DatasetSpecError(f"{source_name}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()

    if root is None or data is None:
        raise DatasetSpecError(f"{source_name} is empty; a dataset spec needs at least name and source")
    if not isinstance(data, dict) or not isinstance(root, MappingNode):
        raise DatasetSpecError(
            f"{source_name} line {root.start_mark.line + 1}: a dataset spec is a mapping "
            f"(name: ..., source: ...), not a {type(data).__name__}"
        )
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as exc:
        problems = _describe_errors(exc, root, source_name)
        shown = problems[:_MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        message = "; ".join(shown) + (f"; and {more} more problem(s)" if more else "")
        raise DatasetSpecError(message, tuple(problems)) from None
    spec._source_name = source_name
    spec._lines = _index_lines(root)
    mismatched = _spec_problems(spec)
    if mismatched:
        raise DatasetSpecError("; ".join(mismatched), tuple(mismatched))
    return spec


def _check_duplicate_keys(node: Node, source_name: str) -> None:
    """PyYAML keeps the last of two equal keys silently; a spec with both is almost always a mistake."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise DatasetSpecError(
                        f"{source_name} line {line}: duplicate key {key.value!r} "
                        f"(first written at line {seen[key.value]}); keep one"
                    )
                seen[key.value] = line
            _check_duplicate_keys(value, source_name)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, source_name)


def _child(node: Node, part: str | int) -> tuple[Node, int] | None:
    """The node under ``part`` and its line: a mapping value is placed at its key's line (where a
    person looks for ``coerce:``), a list item at its own first line."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(part):
                return value, key.start_mark.line + 1
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: Node = node.value[part]
        return item, item.start_mark.line + 1
    return None


def _walk(root: Node, loc: tuple[str | int, ...]) -> tuple[int, Path_]:
    """Follow a pydantic error location through the YAML nodes to a line.

    Location parts that name no node (union members such as ``'str'``, ``'[key]'``) are skipped; a key
    that is absent (a missing field) ends the walk at its parent mapping.
    """
    node, line, path = root, root.start_mark.line + 1, []
    for part in loc:
        found = _child(node, part)
        if found is not None:
            node, line = found
            path.append(part)
        elif isinstance(node, MappingNode) and isinstance(part, str):
            path.append(part)
            break
    return line, tuple(path)


def _describe_errors(exc: ValidationError, root: Node, source_name: str) -> list[str]:
    messages: dict[tuple[int, Path_], list[str]] = {}
    for error in exc.errors(include_url=False):
        line, path = _walk(root, tuple(error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_fields(path[:-1])
            message = "unknown field; check its spelling" + (f" (allowed: {allowed})" if allowed else "")
        elif kind == "missing":
            message = "required field is missing"
        elif kind not in ("value_error", "assertion_error") and _is_scalar(error.get("input")):
            message += f" (got {error['input']!r})"
        bucket = messages.setdefault((line, path), [])
        if message not in bucket:
            bucket.append(message)
    return [
        f"{source_name} line {line}, {format_path(path)}: {' or '.join(found)}"
        for (line, path), found in messages.items()
    ]


def _allowed_fields(path: Path_) -> str:
    """The field names of the model that ``path`` leads to, for 'unknown field' messages."""
    model: type[BaseModel] | None = DatasetSpec
    for part in path:
        if model is None:
            return ""
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return ", ".join(model.model_fields) if model else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date)


def _index_lines(root: Node) -> dict[Path_, int]:
    """The 1-based line of every field (its key's line) and list item, by field path."""
    lines: dict[Path_, int] = {}

    def visit(node: Node, path: Path_, line: int) -> None:
        lines[path] = line
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    visit(value, (*path, key.value), key.start_mark.line + 1)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, (*path, index), item.start_mark.line + 1)

    visit(root, (), root.start_mark.line + 1)
    return lines
