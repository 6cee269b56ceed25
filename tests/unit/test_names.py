"""The one naming rule for knowledge bases, datasets and models, and how names are printed."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from ods.domain.names import (
    InvalidNameError,
    KnowledgeBaseName,
    check_name,
    display_name,
    is_valid_name,
    name_problem,
)
from ods.stages.health import misnamed_entries

RULE = "use 1-63 lower-case letters, digits, '_' or '-', starting with a letter"


@pytest.mark.parametrize("name", ["policies", "sales_2024", "sales-returns", "a", "x" * 63, "kb-1_b"])
def test_names_that_follow_the_rule_are_accepted_and_printed_bare(name: str) -> None:
    assert is_valid_name(name) and check_name("knowledge base", name) == name
    assert display_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../x", f"knowledge base name '../../x' is not allowed: {RULE} (e.g. policies)"),
        ("kb with space", f"knowledge base name 'kb with space' is not allowed: {RULE} (e.g. policies)"),
        ("kb\nnext", f"knowledge base name 'kb\\nnext' is not allowed: {RULE} (e.g. policies)"),
        ("kb\x1b[31mred", f"knowledge base name 'kb\\x1b[31mred' is not allowed: {RULE} (e.g. policies)"),
        ("", f"knowledge base name is empty: {RULE} (e.g. policies)"),
        ("Policies", f"knowledge base name 'Policies' is not allowed: {RULE}; 'policies' would do"),
        ("1kb", f"knowledge base name '1kb' is not allowed: {RULE} (e.g. policies)"),
        ("x" * 64, f"knowledge base name '{'x' * 64}' is not allowed: {RULE} (e.g. policies)"),
    ],
)
def test_bad_names_are_refused_with_the_rule_and_the_name_escaped(name: str, message: str) -> None:
    with pytest.raises(InvalidNameError) as raised:
        check_name("knowledge base", name)

    assert str(raised.value) == message
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)
    assert "\x1b" not in display_name(name) and "\n" not in display_name(name)


def test_each_kind_is_named_in_its_message() -> None:
    assert (name_problem("dataset", "Sales") or "").startswith("dataset name 'Sales' is not allowed")
    assert (name_problem("model", "a/b") or "").endswith("(e.g. sales-returns)")


def test_the_parameter_type_refuses_a_bad_name_with_the_rule() -> None:
    adapter = TypeAdapter(KnowledgeBaseName)
    assert adapter.validate_python("policies") == "policies"
    with pytest.raises(ValidationError, match=r"knowledge base name '\.\./x' is not allowed: use 1-63"):
        adapter.validate_python("../x")
    assert adapter.json_schema()["pattern"] == "^[a-z][a-z0-9_-]{0,62}$"


def test_doctor_lists_stored_names_that_break_the_rule_escaped_with_the_fix() -> None:
    assert misnamed_entries({"knowledge base": ["policies"], "dataset": ["sales"], "model": []}) is None

    line = misnamed_entries(
        {"knowledge base": ["ok", "kb with space", "evil\x1b[2J\nkb"], "dataset": [], "model": ["Model"]}
    )

    assert line is not None and "\n" not in line and "\x1b" not in line
    assert line.startswith(f"3 name(s) break the naming rule ({RULE})")
    assert "knowledge base 'kb with space', 'evil\\x1b[2J\\nkb': ingest its source again" in line
    assert "model 'Model': train it again with a valid --name" in line
