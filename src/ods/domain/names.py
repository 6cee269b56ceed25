"""The one rule for the names people give knowledge bases, datasets and models.

A name travels far: into object keys (``datasets/<name>/…``, ``models/<name>/…``), Milvus collection
names, Prefect flow-run names and artifact keys, event resource ids (``ods.dataset.<name>``), SQL table
names (a dataset is queried as a table of its name) and every terminal that lists it. So it is checked,
by this module alone, before anything is written: at the command line, in the stage functions, in the
flows' parameters and, as a last line, in the catalog's writers. The rule is the one model names already
followed, a superset of the datasets' rule, so nothing registered under either becomes invalid.

Names that broke no rule before this one (knowledge bases accepted anything non-blank) are still read and
listed, always through :func:`display_name`, so an escape sequence or a newline never reaches a terminal raw.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ods.errors import OdsError

NameKind = Literal["knowledge base", "dataset", "model", "API key"]

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")
NAME_RULE = "use 1-63 lower-case letters, digits, '_' or '-', starting with a letter"
_EXAMPLES: dict[str, str] = {
    "knowledge base": "policies",
    "dataset": "sales_2024",
    "model": "sales-returns",
    "API key": "ci-pipeline",
}


class InvalidNameError(OdsError, ValueError):
    """A knowledge base, dataset or model name breaks the naming rule (``NAME_RULE``)."""


def is_valid_name(name: object) -> bool:
    """Whether ``name`` may name a knowledge base, dataset or model."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def display_name(name: str) -> str:
    """``name`` as it may be printed: bare when it follows the rule, else quoted with escapes (``repr``),
    so control characters, ESC sequences and newlines are shown as ``\\x1b``, ``\\n``, never sent raw."""
    return name if is_valid_name(name) else repr(name)


def name_problem(kind: NameKind, name: object) -> str | None:
    """Why ``name`` cannot name a ``kind`` (one line, with the rule and an example), or None when it can."""
    if is_valid_name(name):
        return None
    example = _EXAMPLES[kind]
    if not isinstance(name, str):
        return f"{kind} name must be text, not {type(name).__name__}: {NAME_RULE} (e.g. {example})"
    if not name:
        return f"{kind} name is empty: {NAME_RULE} (e.g. {example})"
    shown = repr(name) if len(name) <= 80 else repr(name[:77]) + "…"
    hint = f"; '{name.lower()}' would do" if is_valid_name(name.lower()) else f" (e.g. {example})"
    return f"{kind} name {shown} is not allowed: {NAME_RULE}{hint}"


def check_name(kind: NameKind, name: str) -> str:
    """``name`` if it may name a ``kind``; else :class:`InvalidNameError` saying why and what the rule is."""
    problem = name_problem(kind, name)
    if problem is not None:
        raise InvalidNameError(problem)
    return name


def _knowledge_base_name(name: str) -> str:
    return check_name("knowledge base", name)


def _model_name(name: str) -> str:
    return check_name("model", name)


_DESCRIPTION = f"Name: {NAME_RULE}."
_SCHEMA = {"pattern": f"^{NAME_PATTERN.pattern}$"}

KnowledgeBaseName = Annotated[
    str,
    Field(description=f"Knowledge base name. {_DESCRIPTION}", json_schema_extra=_SCHEMA),
    AfterValidator(_knowledge_base_name),
]
"""A knowledge base name as a validated parameter type (flows' parameters, request models)."""

ModelName = Annotated[
    str,
    Field(description=f"Model name. {_DESCRIPTION}", json_schema_extra=_SCHEMA),
    AfterValidator(_model_name),
]
"""A model name as a validated parameter type."""
