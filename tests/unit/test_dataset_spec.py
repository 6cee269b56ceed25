"""The YAML dataset spec: what it accepts, and errors that name the file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from ods.domain.dataset_spec import (
    CoerceRule,
    DatasetSpec,
    DatasetSpecError,
    DeduplicateRule,
    Expectation,
    MapValuesRule,
    MaskPiiRule,
    SourceSpec,
    Step,
    expectation_type_problem,
    parse_dataset_spec,
)

REPO = Path(__file__).resolve().parents[2]

FULL_SPEC = """\
name: bl_books
description: British Library books
source:
  uri: BL-Flickr-Images-Book.csv
  format: auto
  delimiter: auto
  encoding: auto
  sheet: null
columns:
  select: [Identifier, Date of Publication, Place of Publication]
  rename: {Date of Publication: date_raw, Place of Publication: place}
  drop_empty: true
  max_null_fraction: 0.95
steps:
  - normalize: {columns: [place], trim: true, collapse_spaces: true, case: title, unicode: NFC, empty_as_null: true, strip_chars: "[]"}
  - extract: {column: date_raw, pattern: '(\\d{4})', into: year}
  - coerce: {column: year, type: int}
  - map_values: {column: place, values: {"London]": London}, default: keep}
  - fill_nulls: {column: year, strategy: median}
  - deduplicate: {keys: [Identifier], keep: first, normalize_keys: true}
  - derive: {column: decade, expression: "year // 10 * 10"}
  - mask_pii: {columns: auto, kinds: [email, phone], policy: hash}
expectations:
  - not_null: {column: Identifier}
  - unique: {column: Identifier}
  - between: {column: year, min: 1500, max: 2030, mostly: 0.99}
  - in_set: {column: place, values: [London, Paris]}
  - regex: {column: Identifier, pattern: '^\\d{9}$'}
  - row_count: {min: 1, max: 1000000}
  - column_type: {column: year, type: int}
train:
  trainer: tabular
  target: year
"""


def parse(text: str, name: str = "spec.yaml") -> DatasetSpec:
    return parse_dataset_spec(textwrap.dedent(text), name)


def error_of(text: str, name: str = "spec.yaml") -> DatasetSpecError:
    with pytest.raises(DatasetSpecError) as caught:
        parse(text, name)
    return caught.value


def test_full_spec_parses_into_typed_rules_and_expectations() -> None:
    spec = parse(FULL_SPEC)

    assert spec.name == "bl_books"
    assert spec.source.uri == "BL-Flickr-Images-Book.csv"
    assert spec.columns.rename == {"Date of Publication": "date_raw", "Place of Publication": "place"}
    assert spec.columns.max_null_fraction == 0.95
    assert [step.name for step in spec.steps] == [
        "normalize", "extract", "coerce", "map_values", "fill_nulls", "deduplicate", "derive", "mask_pii",
    ]  # fmt: skip
    assert spec.steps[2].rule == CoerceRule(column="year", type="int")
    assert spec.steps[5].rule == DeduplicateRule(keys=("Identifier",), normalize_keys=True)
    assert spec.steps[7].rule == MaskPiiRule(columns="auto", kinds=("email", "phone"), policy="hash")
    assert [e.name for e in spec.expectations] == [
        "not_null", "unique", "between", "in_set", "regex", "row_count", "column_type",
    ]  # fmt: skip
    between = spec.expectations[2].params
    assert (between.min, between.max, between.mostly) == (1500, 2030, 0.99)  # type: ignore[union-attr]
    assert spec.train == {"trainer": "tabular", "target": "year"}


def test_minimal_spec_takes_defaults() -> None:
    spec = parse("name: sales\nsource: {uri: s3://raw/sales.csv}\n")

    assert spec.source.format == "auto"
    assert spec.source.delimiter == "auto"
    assert spec.columns.drop_empty is True
    assert spec.columns.select is None
    assert spec.steps == ()
    assert spec.expectations == ()
    assert spec.train is None


def test_rule_without_params_uses_its_defaults() -> None:
    spec = parse("name: x\nsource: {uri: a.csv}\nsteps:\n  - deduplicate:\n  - mask_pii: {}\n")

    assert spec.steps[0].rule == DeduplicateRule()
    assert spec.steps[1].rule == MaskPiiRule()


def test_the_example_bl_books_spec_is_valid() -> None:
    path = REPO / "examples" / "specs" / "bl_books.yaml"

    spec = parse_dataset_spec(path.read_text(encoding="utf-8"), path.name)

    assert spec.name == "bl_books"
    assert any(step.name == "deduplicate" for step in spec.steps)


def test_wrong_enum_value_names_file_line_path_and_value() -> None:
    error = error_of(
        """\
        name: bl_books
        source: {uri: a.csv}
        steps:
          - normalize: {columns: [place]}
          - extract: {column: date_raw, pattern: '(\\d{4})', into: year}
          - coerce: {column: year, type: integer}
        """,
        "bl_books.yaml",
    )

    assert str(error) == (
        "bl_books.yaml line 6, steps[2].coerce.type: Input should be 'int', 'float', 'decimal', 'bool', "
        "'date', 'timestamp' or 'string' (got 'integer')"
    )


def test_unknown_rule_is_named_with_the_rules_there_are() -> None:
    error = error_of("name: x\nsource: {uri: a.csv}\nsteps:\n  - trim: {columns: [a]}\n")

    assert str(error).startswith(
        "spec.yaml line 4, steps[0]: unknown rule 'trim'; expected one of: normalize,"
    )


def test_a_step_with_two_rules_is_rejected() -> None:
    error = error_of(
        "name: x\nsource: {uri: a.csv}\nsteps:\n  - {deduplicate: {}, derive: {column: a, expression: b}}\n"
    )

    assert "steps[0]: each rule is a one-key mapping" in str(error)


def test_misspelt_field_lists_the_allowed_ones() -> None:
    error = error_of(
        "name: x\nsource: {uri: a.csv}\ncolumns:\n  drop_empty: true\n  max_null_fractoin: 0.9\n"
    )

    assert str(error) == (
        "spec.yaml line 5, columns.max_null_fractoin: unknown field; check its spelling "
        "(allowed: select, rename, drop_empty, max_null_fraction)"
    )


def test_missing_field_points_at_the_mapping_that_lacks_it() -> None:
    error = error_of("name: x\nsource: {uri: a.csv}\nsteps:\n  - extract: {column: a}\n")

    assert str(error) == "spec.yaml line 4, steps[0].extract.pattern: required field is missing"


def test_every_problem_is_reported_with_its_own_line() -> None:
    error = error_of(
        """\
        name: Bad-Name
        source: {uri: a.csv, delimiter: ab}
        steps:
          - coerce: {column: a, type: decimal}
          - extract: {column: a, pattern: '(unclosed'}
        expectations:
          - between: {column: a, min: 5, max: 1}
          - row_count: {}
        """
    )

    problems = error.problems
    assert len(problems) == 6
    assert problems[0] == (
        "spec.yaml line 1, name: dataset name 'Bad-Name' is not allowed: use 1-63 lower-case letters, digits, "
        "'_' or '-', starting with a letter; 'bad-name' would do"
    )
    assert problems[1].startswith("spec.yaml line 2, source.delimiter: delimiter must be 'auto' or a single")
    assert problems[2] == (
        "spec.yaml line 4, steps[0].coerce: type decimal needs a scale (digits after the decimal point), "
        "e.g. scale: 2"
    )
    assert problems[3].startswith("spec.yaml line 5, steps[1].extract.pattern: invalid regular expression")
    assert problems[4] == "spec.yaml line 7, expectations[0].between: min 5 is larger than max 1"
    assert problems[5] == "spec.yaml line 8, expectations[1].row_count: row_count needs min, max or both"
    assert str(error).endswith("; and 1 more problem(s)")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("coerce: {column: a, type: int, formats: ['%Y']}", "formats only apply to type date or timestamp"),
        ("coerce: {column: a, type: int, scale: 2}", "scale only applies to type decimal"),
        ("coerce: {column: a, type: date, utc: true}", "utc only applies to type timestamp"),
        ("fill_nulls: {column: a, strategy: constant}", "strategy constant needs a value"),
        ("fill_nulls: {column: a, strategy: mode, value: 1}", "value only applies to strategy constant"),
        ("normalize: {columns: []}", "list at least one column"),
        (
            "normalize: {columns: [a], case: Lower}",
            "Input should be 'lower', 'upper' or 'title' (got 'Lower')",
        ),
        ("mask_pii: {kinds: [passport]}", "(got 'passport')"),
        ("deduplicate: {keys: [a, a]}", "keys lists 'a' more than once"),
        ("derive: {column: a, expression: 'b.__class__'}", "double underscores are not allowed"),
        ("map_values: {column: a, values: {}}", "Dictionary should have at least 1 item"),
    ],
)
def test_rule_parameters_are_checked(step: str, message: str) -> None:
    error = error_of(f"name: x\nsource: {{uri: a.csv}}\nsteps:\n  - {step}\n")

    assert str(error).startswith("spec.yaml line 4, steps[0].")
    assert message in str(error)


def test_map_values_default_null_may_be_written_as_yaml_null() -> None:
    spec = parse(
        "name: x\nsource: {uri: a.csv}\nsteps:\n  - map_values: {column: a, values: {b: c}, default: null}\n"
    )

    assert spec.steps[0].rule == MapValuesRule(column="a", values={"b": "c"}, default="null")


def test_rename_targets_must_be_unique() -> None:
    error = error_of("name: x\nsource: {uri: a.csv}\ncolumns:\n  rename: {a: z, b: z}\n")

    assert str(error) == "spec.yaml line 4, columns.rename: rename gives several columns the name 'z'"


def test_specs_can_be_built_in_code() -> None:
    spec = DatasetSpec(
        name="x", source=SourceSpec(uri="a.csv"), steps=(Step(coerce=CoerceRule(column="a", type="int")),)
    )

    assert spec.steps[0].name == "coerce"
    assert (
        spec.spec_hash()
        == parse("name: x\nsource: {uri: a.csv}\nsteps: [{coerce: {column: a, type: int}}]\n").spec_hash()
    )


def test_source_options_are_checked_and_tab_is_understood() -> None:
    assert parse("name: x\nsource: {uri: a.tsv, delimiter: tab}\n").source.delimiter == "\t"
    assert parse('name: x\nsource: {uri: a.tsv, delimiter: "\\t"}\n').source.delimiter == "\t"
    assert parse("name: x\nsource: {uri: a.xlsx, sheet: 2}\n").source.sheet == 2

    error = error_of("name: x\nsource:\n  uri: a.csv\n  encoding: latin-9000\n")
    assert str(error).startswith("spec.yaml line 4, source.encoding: unknown encoding 'latin-9000'")


def test_invalid_yaml_names_line_and_column() -> None:
    error = error_of("name: x\nsource: {uri: a.csv\nsteps: []\n", "broken.yaml")

    assert str(error).startswith("broken.yaml line 3, column 6: invalid YAML:")


def test_unquoted_bracket_in_a_flow_mapping_is_a_yaml_error() -> None:
    error = error_of(
        "name: x\nsource: {uri: a.csv}\nsteps:\n  - map_values: {column: p, values: {London]: London}}\n"
    )

    assert str(error).startswith("spec.yaml line 4, column 44: invalid YAML:")


def test_duplicate_keys_are_an_error_instead_of_last_one_wins() -> None:
    error = error_of("name: x\nsource: {uri: a.csv}\nname: y\n")

    assert str(error) == "spec.yaml line 3: duplicate key 'name' (first written at line 1); keep one"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "spec.yaml is empty; a dataset spec needs at least name and source"),
        ("# only a comment\n", "spec.yaml is empty; a dataset spec needs at least name and source"),
        ("- a\n- b\n", "spec.yaml line 1: a dataset spec is a mapping (name: ..., source: ...), not a list"),
    ],
)
def test_empty_or_non_mapping_documents(text: str, message: str) -> None:
    assert str(error_of(text)) == message


def test_spec_hash_ignores_key_order_layout_and_written_defaults() -> None:
    compact = parse(
        "name: x\nsource: {uri: a.csv}\nsteps: [{coerce: {column: y, type: int}}, {deduplicate: null}]\n"
    )
    verbose = parse(
        """\
        # the same spec, written out
        steps:
          - coerce:
              type: int
              column: y
          - deduplicate: {keep: first, keys: null, normalize_keys: false}
        source:
          format: auto
          uri: a.csv
        name: x
        columns: {drop_empty: true}
        """
    )
    changed = parse(
        "name: x\nsource: {uri: a.csv}\nsteps: [{coerce: {column: y, type: float}}, {deduplicate: null}]\n"
    )

    assert compact.spec_hash() == verbose.spec_hash()
    assert len(compact.spec_hash()) == 64
    assert compact.spec_hash() != changed.spec_hash()


def test_dump_keeps_the_one_key_step_shape_and_round_trips() -> None:
    spec = parse(FULL_SPEC)

    dumped = spec.model_dump(mode="json")
    again = DatasetSpec.model_validate(dumped)

    assert dumped["steps"][2] == {
        "coerce": {
            "column": "year",
            "type": "int",
            "formats": [],
            "scale": None,
            "precision": 38,
            "utc": False,
        }
    }
    assert again.spec_hash() == spec.spec_hash()


def test_where_points_back_into_the_file() -> None:
    spec = parse(FULL_SPEC, "bl_books.yaml")

    assert spec.where("steps", 2, "coerce", "column") == "bl_books.yaml line 17, steps[2].coerce.column"
    assert spec.where("columns") == "bl_books.yaml line 9, columns"


def test_specs_are_immutable() -> None:
    spec = parse(FULL_SPEC)

    with pytest.raises(pydantic.ValidationError):
        spec.name = "other"  # type: ignore[misc]


def test_an_expectation_the_steps_make_impossible_is_refused_at_load_time_with_both_lines() -> None:
    error = error_of(
        """\
        name: payments
        source: {uri: p.csv}
        steps:
          - coerce: {column: amount, type: string}
        expectations:
          - not_null: {column: amount}
          - between: {column: amount, min: 0, max: 1000}
        """
    )

    assert str(error) == (
        "spec.yaml line 7, expectations[1].between.column: between(amount) needs a numeric column, but "
        "spec.yaml line 4, steps[0] makes 'amount' text (string); coerce it to int, float or decimal instead, "
        "or drop the expectation"
    )


def test_an_expectation_on_a_column_the_selection_leaves_out_is_refused_at_load_time() -> None:
    error = error_of(
        """\
        name: payments
        source: {uri: p.csv}
        columns: {select: [id, amt], rename: {amt: amount}}
        steps:
          - derive: {column: cents, expression: amount * 100}
        expectations:
          - not_null: {column: cents}
          - not_null: {column: amt}
        """
    )

    assert str(error) == (
        "spec.yaml line 8, expectations[1].not_null.column: column 'amt' is not among the columns the spec "
        "keeps (amount, cents, id); select it under columns.select, or name a kept column"
    )


def test_an_expectation_the_steps_make_possible_is_accepted() -> None:
    spec = parse(
        "name: p\nsource: {uri: p.csv}\nsteps:\n  - extract: {column: raw, pattern: '(\\d+)', into: amount}\n"
        "  - coerce: {column: amount, type: int}\nexpectations:\n  - between: {column: amount, min: 0}\n"
        "  - regex: {column: raw, pattern: '^\\d'}\n"
    )

    assert [expectation.name for expectation in spec.expectations] == ["between", "regex"]


@pytest.mark.parametrize(
    ("expectation", "column_type", "problem"),
    [
        (
            {"between": {"column": "a", "min": 0}},
            "string",
            "needs a numeric column, but 'a' is text (string)",
        ),
        ({"between": {"column": "a", "max": 1.5}}, "bool", "needs a numeric column, but 'a' is true/false"),
        ({"between": {"column": "a", "min": "2024-01-01"}}, "int", "needs a date, timestamp or text column"),
        (
            {"regex": {"column": "a", "pattern": "^x"}},
            "float",
            "needs a text column, but 'a' is numbers (float)",
        ),
        ({"between": {"column": "a", "min": 0}}, "decimal", None),
        ({"between": {"column": "a", "min": "2024-01-01"}}, "date", None),
        ({"regex": {"column": "a", "pattern": "^x"}}, "string", None),
        ({"in_set": {"column": "a", "values": [1]}}, "string", None),
        ({"between": {"column": "a", "min": 0}}, "other", None),
    ],
)
def test_type_problems_name_the_type_and_the_coerce_step(
    expectation: dict[str, Any], column_type: str, problem: str | None
) -> None:
    found = expectation_type_problem(Expectation.model_validate(expectation), column_type)

    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found
        assert found.endswith("before validating") and "add a `coerce` step for 'a'" in found
