"""Cleaning rules: what each does to the data, what its report counts, and that inputs stay untouched."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ods.domain.cleaning import CleaningResult, RuleReport, apply_cleaning
from ods.domain.dataset_spec import DatasetSpecError, parse_dataset_spec
from ods.domain.pii import hash_value, mask_value

TEXT = "string[pyarrow]"


def text(*values: str | None) -> pd.Series:
    return pd.Series(list(values), dtype=TEXT)


def clean(
    frame: pd.DataFrame, steps: str = "", *, columns: str = "drop_empty: false", salt: str = ""
) -> CleaningResult:
    """Run a spec with these columns/steps (YAML) and check the input frame was not modified."""
    spec_text = "name: t\nsource: {uri: t.csv}\ncolumns:\n" + textwrap.indent(textwrap.dedent(columns), "  ")
    spec_text = spec_text.rstrip("\n") + "\n"
    if steps:
        spec_text += "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")
    spec = parse_dataset_spec(spec_text, "t.yaml")
    before = frame.copy(deep=True)
    result = apply_cleaning(frame, spec, pii_salt=salt)
    pd.testing.assert_frame_equal(frame, before)
    return result


def only(result: CleaningResult, rule: str) -> RuleReport:
    (report,) = result.reports_for(rule)
    return report


def values(series: pd.Series) -> list[object]:
    return [None if pd.isna(value) else value for value in series.tolist()]


# --- columns -----------------------------------------------------------------------------------------


def test_select_rename_and_drop_empty_and_sparse_columns() -> None:
    frame = pd.DataFrame(
        {
            "Identifier": text("1", "2", "3", "4"),
            "Date of Publication": text("1879", None, "1880", "1881"),
            "Empty": text(None, None, None, None),
            "Sparse": text("x", None, None, None),
            "Unwanted": text("a", "b", "c", "d"),
        }
    )

    result = clean(
        frame,
        columns="""\
        select: [Identifier, Date of Publication, Empty, Sparse]
        rename: {Date of Publication: date_raw}
        drop_empty: true
        max_null_fraction: 0.5
        """,
    )

    assert list(result.frame.columns) == ["Identifier", "date_raw"]
    assert [(r.rule, r.columns, r.columns_dropped) for r in result.report] == [
        ("select_columns", ("Unwanted",), 1),
        ("rename_columns", ("date_raw",), 0),
        ("drop_empty_columns", ("Empty",), 1),
        ("drop_sparse_columns", ("Sparse",), 1),
    ]
    assert only(result, "drop_sparse_columns").detail == "more than 50% null (Sparse: 75.00% null)"
    assert (result.rows_in, result.columns_in, result.rows_out) == (4, 5, 4)


def test_selecting_a_missing_column_lists_the_available_ones() -> None:
    frame = pd.DataFrame({"Identifier": text("1"), "Title": text("t")})

    with pytest.raises(DatasetSpecError) as caught:
        clean(frame, columns="select: [Identifier, Author]")

    assert str(caught.value) == (
        "t.yaml line 3, columns.select: column 'Author' not in the table; "
        "columns at this point: 'Identifier', 'Title'"
    )


def test_renaming_onto_an_existing_column_is_refused() -> None:
    frame = pd.DataFrame({"a": text("1"), "b": text("2")})

    with pytest.raises(DatasetSpecError, match=r"columns.rename: column 'b' already exist"):
        clean(frame, columns="rename: {a: b}")
    with pytest.raises(DatasetSpecError, match=r"columns.rename: column 'z' not in the table"):
        clean(frame, columns="rename: {z: y}")


def test_duplicate_column_names_are_refused() -> None:
    frame = pd.DataFrame([["1", "2"]], columns=["a", "a"], dtype=TEXT)

    with pytest.raises(DatasetSpecError, match="several columns named 'a'"):
        clean(frame)


# --- normalize ---------------------------------------------------------------------------------------


def test_normalize_trims_collapses_and_nulls_empty_text() -> None:
    frame = pd.DataFrame(
        {
            "place": text("  London  ", "New\u00a0\u00a0 York", "[London]", "   ", None, "Paris"),
            "n": pd.array([1, 2, 3, 4, 5, 6], dtype="Int64"),
        }
    )

    result = clean(frame, "- normalize: {columns: all, strip_chars: '[]'}")

    assert values(result.frame["place"]) == ["London", "New York", "London", None, None, "Paris"]
    assert result.frame["n"].dtype == "Int64"
    report = only(result, "normalize")
    assert (report.columns, report.changed, report.nulled) == (("place",), 3, 1)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("lower", ["london", "new york", "ÉCOLE".lower()]),
        ("upper", ["LONDON", "NEW YORK", "ÉCOLE"]),
        ("title", ["London", "New York", "École"]),
    ],
)
def test_normalize_letter_case(case: str, expected: list[str]) -> None:
    frame = pd.DataFrame({"place": text("london", "NEW york", "école")})

    result = clean(frame, f"- normalize: {{columns: [place], case: {case}}}")

    assert values(result.frame["place"]) == expected


def test_normalize_unicode_forms() -> None:
    frame = pd.DataFrame({"s": text("Cafe\u0301", "ｆｕｌｌ")})

    nfc = clean(frame, "- normalize: {columns: [s]}").frame["s"]
    nfkc = clean(frame, "- normalize: {columns: [s], unicode: NFKC}").frame["s"]

    assert values(nfc) == ["Café", "ｆｕｌｌ"]
    assert values(nfkc) == ["Café", "full"]


def test_normalize_unicode_only_rewrites_non_ascii_values_and_counts_them() -> None:
    frame = pd.DataFrame({"s": text("plain", "Cafe\u0301", None, "also plain", "\u00e9cole")})

    result = clean(frame, "- normalize: {columns: [s]}")

    assert values(result.frame["s"]) == ["plain", "Café", None, "also plain", "école"]
    assert (only(result, "normalize").changed, only(result, "normalize").nulled) == (1, 0)


def test_normalize_keeps_empty_text_when_asked() -> None:
    frame = pd.DataFrame({"s": text(" ", "a")})

    result = clean(frame, "- normalize: {columns: [s], empty_as_null: false}")

    assert values(result.frame["s"]) == ["", "a"]


def test_normalize_refuses_a_non_text_column() -> None:
    frame = pd.DataFrame({"n": pd.array([1], dtype="Int64")})

    with pytest.raises(DatasetSpecError) as caught:
        clean(frame, "- normalize: {columns: [n]}")

    assert str(caught.value) == (
        "t.yaml line 6, steps[0].normalize.columns: column 'n' holds int values and this rule works on "
        "text; coerce it to string first"
    )


# --- extract -----------------------------------------------------------------------------------------


def test_extract_first_group_and_count_non_matching_values() -> None:
    frame = pd.DataFrame({"date_raw": text("1879 [1878]", "[1880.]", "18--", "1839, 38-54", None, "n.d.")})

    result = clean(frame, r"- extract: {column: date_raw, pattern: '(\d{4})', into: year}")

    assert values(result.frame["year"]) == ["1879", "1880", None, "1839", None, None]
    assert values(result.frame["date_raw"])[0] == "1879 [1878]"
    report = only(result, "extract")
    assert (report.columns, report.changed, report.unparseable, report.nulled) == (
        ("date_raw", "year"),
        3,
        2,
        2,
    )
    assert report.examples == ("18--", "n.d.")


def test_extract_without_group_keeps_the_whole_match_in_place() -> None:
    frame = pd.DataFrame({"code": text("ab-123-x", "zz"), "n": pd.array([7, 8], dtype="Int64")})

    result = clean(frame, r"- extract: {column: code, pattern: '\d+-\w'}")

    assert values(result.frame["code"]) == ["123-x", None]


def test_extract_reads_numbers_as_text() -> None:
    frame = pd.DataFrame({"n": pd.array([2024, 1999], dtype="Int64")})

    result = clean(frame, r"- extract: {column: n, pattern: '^(\d{2})', into: century}")

    assert values(result.frame["century"]) == ["20", "19"]


def test_examples_are_capped_at_five_distinct_values() -> None:
    frame = pd.DataFrame({"s": text(*[f"bad{i}" for i in range(8)], "bad0", "7")})

    report = only(clean(frame, r"- extract: {column: s, pattern: '^(\d)$'}"), "extract")

    assert report.unparseable == 9
    assert report.examples == ("bad0", "bad1", "bad2", "bad3", "bad4")


# --- coerce ------------------------------------------------------------------------------------------


def test_coerce_int_counts_unparseable_and_non_integral_values() -> None:
    frame = pd.DataFrame(
        {"n": text("1", " 2 ", "3.0", "1e3", "4.5", "x", "", None, "12345678901234567", "-7")}
    )

    result = clean(frame, "- coerce: {column: n, type: int}")

    assert result.frame["n"].dtype == "Int64"
    assert values(result.frame["n"]) == [1, 2, 3, 1000, None, None, None, None, 12345678901234567, -7]
    report = only(result, "coerce")
    assert (report.changed, report.unparseable, report.nulled) == (6, 2, 3)
    assert report.examples == ("4.5", "x")


def test_coerce_float() -> None:
    frame = pd.DataFrame({"x": text("1.5", "-2", "1e-3", "abc")})

    result = clean(frame, "- coerce: {column: x, type: float}")

    assert result.frame["x"].dtype == "Float64"
    assert values(result.frame["x"]) == [1.5, -2.0, 0.001, None]
    assert only(result, "coerce").unparseable == 1


def test_coerce_decimal_rounds_to_scale_and_rejects_too_many_digits() -> None:
    frame = pd.DataFrame({"amount": text("1.005", "2", "3.14159", "1e2", "12345.6", "NaN", "1,5")})

    result = clean(frame, "- coerce: {column: amount, type: decimal, scale: 2, precision: 6}")

    assert result.frame["amount"].dtype == pd.ArrowDtype(pa.decimal128(6, 2))
    assert values(result.frame["amount"]) == [
        Decimal("1.00"), Decimal("2.00"), Decimal("3.14"), Decimal("100.00"), None, None, None,
    ]  # fmt: skip
    report = only(result, "coerce")
    assert (report.unparseable, report.examples) == (3, ("12345.6", "NaN", "1,5"))


def test_coerce_bool_understands_common_tokens() -> None:
    frame = pd.DataFrame({"flag": text("true", "No", "Y", "0", "是", "否", "maybe", None)})

    result = clean(frame, "- coerce: {column: flag, type: bool}")

    assert result.frame["flag"].dtype == "boolean"
    assert values(result.frame["flag"]) == [True, False, True, False, True, False, None, None]
    assert only(result, "coerce").examples == ("maybe",)


def test_coerce_date_tries_each_format_in_turn() -> None:
    frame = pd.DataFrame({"d": text("2021-03-04", "04/03/2021", "4 March 2021", "31/02/2021")})

    result = clean(frame, "- coerce: {column: d, type: date, formats: ['%Y-%m-%d', '%d/%m/%Y']}")

    assert result.frame["d"].dtype == pd.ArrowDtype(pa.date32())
    assert values(result.frame["d"]) == [date(2021, 3, 4), date(2021, 3, 4), None, None]
    assert only(result, "coerce").examples == ("4 March 2021", "31/02/2021")


def test_coerce_date_defaults_to_iso_and_keeps_old_dates() -> None:
    frame = pd.DataFrame({"d": text("1510-06-01", "2020-01-02T10:30:00", "yesterday")})

    result = clean(frame, "- coerce: {column: d, type: date}")

    assert values(result.frame["d"]) == [date(1510, 6, 1), date(2020, 1, 2), None]


def test_coerce_timestamp_and_utc() -> None:
    frame = pd.DataFrame({"t": text("2020-01-01T10:00:00+01:00", "2020-01-01T10:00:00+02:00")})

    with pytest.raises(DatasetSpecError, match="set utc: true"):
        clean(frame, "- coerce: {column: t, type: timestamp}")
    result = clean(frame, "- coerce: {column: t, type: timestamp, utc: true}")

    assert str(result.frame["t"].dtype) == "datetime64[us, UTC]"
    assert values(result.frame["t"]) == [
        pd.Timestamp("2020-01-01T09:00:00Z"),
        pd.Timestamp("2020-01-01T08:00:00Z"),
    ]


def test_coerce_to_string_and_from_typed_columns() -> None:
    frame = pd.DataFrame(
        {"n": pd.array([1, None], dtype="Int64"), "f": pd.array([2.0, 2.5], dtype="Float64")}
    )

    result = clean(frame, "- coerce: {column: n, type: string}\n- coerce: {column: f, type: int}")

    assert result.frame["n"].dtype == TEXT
    assert values(result.frame["n"]) == ["1", None]
    assert values(result.frame["f"]) == [2, None]
    assert result.reports_for("coerce")[1].examples == ("2.5",)


def test_coerce_to_the_type_a_column_already_has_changes_nothing() -> None:
    frame = pd.DataFrame({"n": pd.array([1, 2], dtype="Int64")})

    result = clean(frame, "- coerce: {column: n, type: int}")

    assert only(result, "coerce").detail == "already int"
    assert values(result.frame["n"]) == [1, 2]


# --- map_values --------------------------------------------------------------------------------------


def test_map_values_keeps_unlisted_values_by_default() -> None:
    frame = pd.DataFrame({"place": text("London]", "Londres", "Paris", None, "London]")})

    result = clean(frame, '- map_values: {column: place, values: {"London]": London, Londres: London}}')

    assert values(result.frame["place"]) == ["London", "London", "Paris", None, "London"]
    report = only(result, "map_values")
    assert (report.changed, report.nulled) == (3, 0)


def test_map_values_can_null_unlisted_values_and_map_to_null() -> None:
    frame = pd.DataFrame({"size": text("S", "M", "XXL", "unknown")})

    result = clean(
        frame, "- map_values: {column: size, values: {S: small, M: medium, unknown: null}, default: null}"
    )

    assert values(result.frame["size"]) == ["small", "medium", None, None]
    assert only(result, "map_values").nulled == 2


# --- fill_nulls --------------------------------------------------------------------------------------


def test_fill_nulls_drop_row() -> None:
    frame = pd.DataFrame({"id": text("a", "b", "c"), "x": pd.array([1, None, 3], dtype="Int64")})

    result = clean(frame, "- fill_nulls: {column: x, strategy: drop_row}")

    assert values(result.frame["id"]) == ["a", "c"]
    assert list(result.frame.index) == [0, 1]
    assert only(result, "fill_nulls").rows_dropped == 1


def test_fill_nulls_constant_median_and_mode() -> None:
    frame = pd.DataFrame(
        {
            "city": text("Paris", None, "Lyon", "Paris"),
            "n": pd.array([1, None, 2, 10], dtype="Int64"),
            "f": pd.array([1.0, None, 2.0, 10.0], dtype="Float64"),
            "label": text(None, "x", None, "y"),
        }
    )

    result = clean(
        frame,
        """\
        - fill_nulls: {column: city, strategy: mode}
        - fill_nulls: {column: n, strategy: median}
        - fill_nulls: {column: f, strategy: median}
        - fill_nulls: {column: label, strategy: constant, value: 0}
        """,
    )

    assert values(result.frame["city"]) == ["Paris", "Paris", "Lyon", "Paris"]
    assert values(result.frame["n"]) == [1, 2, 2, 10]
    assert values(result.frame["f"]) == [1.0, 2.0, 2.0, 10.0]
    assert values(result.frame["label"]) == ["0", "x", "0", "y"]
    assert [r.changed for r in result.reports_for("fill_nulls")] == [1, 1, 1, 2]


def test_fill_nulls_refuses_values_that_do_not_fit() -> None:
    frame = pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "s": text("a", None)})

    with pytest.raises(
        DatasetSpecError, match=r"steps\[0\].fill_nulls.value: 'many' does not fit column 'n' of type int"
    ):
        clean(frame, "- fill_nulls: {column: n, strategy: constant, value: many}")
    with pytest.raises(DatasetSpecError, match="median needs a numeric column"):
        clean(frame, "- fill_nulls: {column: s, strategy: median}")


# --- deduplicate -------------------------------------------------------------------------------------


def test_deduplicate_exact_rows() -> None:
    frame = pd.DataFrame({"a": text("x", "x", "y"), "b": text("1", "1", "1")})

    result = clean(frame, "- deduplicate: {}")

    assert values(result.frame["a"]) == ["x", "y"]
    report = only(result, "deduplicate")
    assert (report.columns, report.rows_dropped, report.examples) == (("a", "b"), 1, ("x | 1",))


def test_deduplicate_by_keys_keeping_the_last() -> None:
    frame = pd.DataFrame({"id": text("1", "2", "3"), "k": text("a", "b", "a")})

    result = clean(frame, "- deduplicate: {keys: [k], keep: last}")

    assert values(result.frame["id"]) == ["2", "3"]


def test_deduplicate_treats_nulls_nan_and_signed_zeros_like_pandas() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 1, None, 2**60, 2**60 + 1], dtype="Int64"),
            "f": pd.array([0.0, None, -0.0, None, 1.5, 1.5], dtype="Float64"),
            "x": pd.Series([float("nan"), 0.0, float("nan"), 0.0, 1.0, 1.0]),
            "b": pd.array([True, None, True, None, False, False], dtype="boolean"),
            "d": pd.array(
                [date(2024, 1, 1), None, date(2024, 1, 1), None, None, None], dtype="date32[pyarrow]"
            ),
            "s": text("a", None, "a", None, "b", "b"),
        }
    )

    result = clean(frame, "- deduplicate: {}")

    expected = frame.loc[~frame.duplicated()]
    pd.testing.assert_frame_equal(result.frame, expected.reset_index(drop=True))
    assert only(result, "deduplicate").rows_dropped == 2


@pytest.mark.parametrize("keep", ["first", "last"])
def test_deduplicate_matches_pandas_on_many_mixed_rows(keep: str) -> None:
    rng = np.random.default_rng(3)
    size = 2_000
    unique = pd.DataFrame(
        {
            "i": pd.array(rng.integers(0, 40, size), dtype="Int64"),
            "f": pd.array(rng.choice([0.5, 1.5, -0.0, 0.0], size), dtype="Float64"),
            "s": pd.Series(rng.choice(["a", "b", "c"], size), dtype=TEXT),
        }
    )
    frame = pd.concat([unique, unique.sample(300, random_state=1)], ignore_index=True)
    frame.loc[rng.integers(0, len(frame), 50), "i"] = None

    result = clean(frame, f"- deduplicate: {{keep: {keep}}}")

    expected = frame.loc[~frame.duplicated(keep=keep)]
    pd.testing.assert_frame_equal(result.frame, expected.reset_index(drop=True))


def test_deduplicate_near_duplicates_with_normalized_keys() -> None:
    frame = pd.DataFrame(
        {
            "title": text("The Raven.", "the  raven", "THE RAVEN!", "The Raven", "Ulysses"),
            "author": text("Poe, E. A.", "poe e a", "Poe E.A.", "Joyce", "Joyce"),
            "year": pd.array([1845, 1845, 1845, 1845, 1922], dtype="Int64"),
        }
    )

    exact = clean(frame, "- deduplicate: {keys: [title, author, year]}")
    near = clean(frame, "- deduplicate: {keys: [title, author, year], normalize_keys: true}")

    assert only(exact, "deduplicate").rows_dropped == 0
    assert values(near.frame["title"]) == ["The Raven.", "The Raven", "Ulysses"]
    report = only(near, "deduplicate")
    assert report.rows_dropped == 2
    assert report.examples == ("the  raven | poe e a | 1845", "THE RAVEN! | Poe E.A. | 1845")


# --- derive ------------------------------------------------------------------------------------------


def test_derive_computes_a_nullable_column() -> None:
    frame = pd.DataFrame({"year": pd.array([1879, None, 1901], dtype="Int64"), "unit price": [2.0, 3.0, 4.0]})

    result = clean(
        frame,
        """\
        - derive: {column: decade, expression: "year // 10 * 10"}
        - derive: {column: total, expression: "`unit price` * 2"}
        """,
    )

    assert values(result.frame["decade"]) == [1870, None, 1900]
    assert result.frame["decade"].dtype == "Int64"
    assert result.frame["total"].dtype == "Float64"
    assert [(r.changed, r.nulled) for r in result.reports_for("derive")] == [(2, 0), (3, 0)]


def test_derive_errors_name_the_expression() -> None:
    frame = pd.DataFrame({"year": pd.array([1879], dtype="Int64")})

    with pytest.raises(DatasetSpecError) as caught:
        clean(frame, '- derive: {column: decade, expression: "yeer // 10"}')
    with pytest.raises(DatasetSpecError, match="assigns instead of computing"):
        clean(frame, '- derive: {column: decade, expression: "decade = year // 10"}')
    with pytest.raises(DatasetSpecError, match="failed"):
        clean(frame, '- derive: {column: x, expression: "year + @frame"}')

    assert str(caught.value).startswith("t.yaml line 6, steps[0].derive.expression: 'yeer // 10' failed:")
    assert str(caught.value).endswith("columns at this point: 'year'")


# --- mask_pii ----------------------------------------------------------------------------------------


def pii_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "contact": text("jane@example.com", "li.lei@example.cn", None),
            "mobile": text("138-1234-5678", "13912345678", "+44 20 7946 0958"),
            "name": text("Jane", "Li Lei", "Sam"),
        }
    )


def test_mask_pii_auto_masks_detected_columns_only() -> None:
    result = clean(pii_frame(), "- mask_pii: {}")

    assert values(result.frame["contact"]) == ["j***@example.com", "l***@example.cn", None]
    assert values(result.frame["mobile"]) == ["***-****-5678", "*******5678", "+** ** **** 0958"]
    assert values(result.frame["name"]) == ["Jane", "Li Lei", "Sam"]
    report = only(result, "mask_pii")
    assert (report.columns, report.changed) == (("contact", "mobile"), 5)
    assert result.pii_kinds == {"contact": "email", "mobile": "phone"}


def test_mask_pii_vectorised_masks_match_mask_value_with_nulls_and_odd_values() -> None:
    emails = [f"user{n}@example.com" for n in range(12)]
    emails += [" a@b.c ", "a@b@c.d", "@x.com", "x@", "@", "", "aa@@b", "a@b@", "a\n@b", "x@y\n", None]
    phones = [f"+44 7700 9000{n:02d}" for n in range(12)]
    phones += [
        "(010) 555-1234 ",
        "1234",
        "12345",
        "",
        "+1 (2) 3-4 5",
        "0000000",
        "phone: none",
        None,
        None,
        None,
        None,
    ]
    frame = pd.DataFrame({"email": text(*emails), "phone": pd.Series(phones, dtype="string[pyarrow]")})

    result = clean(frame, "- mask_pii: {}")

    assert result.pii_kinds == {"email": "email", "phone": "phone"}
    assert values(result.frame["email"]) == [None if v is None else mask_value(v, "email") for v in emails]
    assert values(result.frame["phone"]) == [None if v is None else mask_value(v, "phone") for v in phones]


def test_mask_pii_vectorised_masks_long_chunked_columns_slice_by_slice_with_every_value_in_place() -> None:
    # 150,001 values in two Arrow chunks: the masking slices (65,536 values) cross the chunk boundary,
    # and nulls sit on slice edges.
    phones = [None if n % 65_536 in (0, 65_535) else f"+44 7700 {n:06d}" for n in range(150_001)]
    emails = [None if n % 65_536 == 1 else f"person{n}@example.com" for n in range(150_001)]
    frame = pd.DataFrame(
        {
            "phone": pd.Series(
                pd.arrays.ArrowStringArray(pa.chunked_array([phones[:70_000], phones[70_000:]]))
            ),
            "email": pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([emails[:100], emails[100:]]))),
        }
    )

    result = clean(frame, "- mask_pii: {}")

    assert values(result.frame["phone"]) == [None if v is None else mask_value(v, "phone") for v in phones]
    assert values(result.frame["email"]) == [None if v is None else mask_value(v, "email") for v in emails]
    assert only(result, "mask_pii").changed == 2 * 150_001 - 5 - 3


def test_mask_pii_vectorised_after_dropped_rows_keeps_each_value_on_its_row() -> None:
    emails = [
        "ann@example.com",
        "bob@example.com",
        "bob@example.com",
        None,
        "cy@example.com",
        "ann@example.com",
    ]
    frame = pd.DataFrame({"email": text(*emails), "n": text("1", "2", "2", "3", "4", "5")})

    result = clean(frame, "- deduplicate: {}\n- mask_pii: {}")  # row 2 dropped: the index has a gap

    assert values(result.frame["n"]) == ["1", "2", "3", "4", "5"]
    assert values(result.frame["email"]) == [
        "a***@example.com",
        "b***@example.com",
        None,
        "c***@example.com",
        "a***@example.com",
    ]
    assert only(result, "mask_pii").changed == 4


def test_mask_pii_hash_is_salted_and_kinds_filter() -> None:
    result = clean(pii_frame(), "- mask_pii: {kinds: [email], policy: hash}", salt="pepper")

    assert values(result.frame["contact"])[0] == hash_value("jane@example.com", "pepper")
    assert values(result.frame["mobile"])[0] == "138-1234-5678"
    assert result.pii_kinds == {"contact": "email"}


def test_mask_pii_named_columns_are_masked_whatever_they_hold() -> None:
    result = clean(pii_frame(), "- mask_pii: {columns: [name]}")

    assert values(result.frame["name"]) == ["***", "***", "***"]
    assert result.pii_kinds == {"name": "unknown"}


# --- errors and report -------------------------------------------------------------------------------


def test_a_step_naming_a_missing_column_says_which_step_and_what_exists() -> None:
    frame = pd.DataFrame({"year": text("1879"), "title": text("t")})

    with pytest.raises(DatasetSpecError) as caught:
        clean(frame, "- normalize: {columns: [title]}\n- coerce: {column: yeer, type: int}")

    assert str(caught.value) == (
        "t.yaml line 7, steps[1].coerce.column: column 'yeer' not found (did you mean 'year'?); "
        "columns at this point: 'year', 'title'"
    )


def test_report_is_json_ready() -> None:
    frame = pd.DataFrame({"n": text("1", "x")})

    result = clean(frame, "- coerce: {column: n, type: int}")

    dumped = json.loads(json.dumps(result.report_as_dicts()))
    assert dumped[-1] == {
        "rule": "coerce", "columns": ["n"], "step": 0, "changed": 1, "nulled": 1, "unparseable": 1,
        "rows_dropped": 0, "columns_dropped": 0, "examples": ["x"], "detail": "int", "pii_kinds": {},
    }  # fmt: skip


def test_steps_run_in_order_and_the_result_has_a_fresh_index() -> None:
    frame = pd.DataFrame({"s": text(" 1 ", "2", "2", None)}).set_axis([10, 11, 12, 13])

    result = clean(
        frame,
        """\
        - normalize: {columns: [s]}
        - fill_nulls: {column: s, strategy: drop_row}
        - deduplicate: {}
        - coerce: {column: s, type: int}
        """,
    )

    assert values(result.frame["s"]) == [1, 2]
    assert list(result.frame.index) == [0, 1]
    assert [r.step for r in result.report if r.step is not None] == [0, 1, 2, 3]
    assert result.rows_out == 2
