"""Parsing a YAML dataset spec: every problem is reported with the file, the line and the field path
(``bl_books.yaml line 14, steps[2].coerce.type: ...``) so it can be fixed without guessing."""

from __future__ import annotations

from datetime import date
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ods.domain.dataset_spec.base import DatasetSpecError, Path_, format_path
from ods.domain.dataset_spec.spec import DatasetSpec, spec_problems

_MAX_REPORTED_PROBLEMS = 5


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
    mismatched = spec_problems(spec)
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
