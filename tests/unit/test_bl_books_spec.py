"""The example spec examples/specs/bl_books.yaml on the real British Library corpus (8,287 books)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ods.adapters.tabular.source import read_table
from ods.domain.cleaning import CleaningResult, RuleReport, apply_cleaning
from ods.domain.dataset_spec import parse_dataset_spec
from ods.domain.profiling import profile_frame

SPEC = Path(__file__).resolve().parents[2] / "examples" / "specs" / "bl_books.yaml"

pytestmark = pytest.mark.corpora


@pytest.fixture(scope="module")
def cleaned(corpora_dir: Path) -> CleaningResult:
    spec = parse_dataset_spec(SPEC.read_text(encoding="utf-8"), SPEC.name)
    path = corpora_dir / "tabular" / spec.source.uri
    raw = read_table(path, name=path.name, source=spec.source)
    assert raw.shape == (8287, 15)
    return apply_cleaning(raw, spec)


def report(result: CleaningResult, rule: str, index: int = 0) -> RuleReport:
    return result.reports_for(rule)[index]


def test_rows_and_columns_in_and_out(cleaned: CleaningResult) -> None:
    assert (cleaned.rows_in, cleaned.columns_in) == (8287, 15)
    assert cleaned.rows_out == 8265
    assert list(cleaned.frame.columns) == [
        "identifier", "edition", "place", "date_raw", "publisher", "title", "author", "contributors",
        "issuance_type", "year",
    ]  # fmt: skip


def test_empty_and_mostly_empty_columns_are_dropped(cleaned: CleaningResult) -> None:
    assert report(cleaned, "select_columns").columns == ("Flickr URL", "Shelfmarks")
    empty = report(cleaned, "drop_empty_columns")
    sparse = report(cleaned, "drop_sparse_columns")
    assert (empty.columns, empty.columns_dropped) == (
        ("corporate_author", "corporate_contributors", "engraver"),
        3,
    )
    assert (sparse.columns, sparse.columns_dropped) == (("former_owner",), 1)


def test_years_come_from_the_first_four_digit_number(cleaned: CleaningResult) -> None:
    extract = report(cleaned, "extract", 0)
    coerce = report(cleaned, "coerce")
    year = cleaned.frame["year"]

    assert (extract.changed, extract.unparseable) == (8104, 2)  # 181 more dates are empty
    assert extract.examples == ("112. G. & W. B. Whittaker", "17 vols. University Press")
    assert (coerce.changed, coerce.unparseable) == (8104, 0)
    assert year.dtype == "Int64"
    assert (year.min(), year.max()) == (1510, 1915)
    assert (int(year.notna().sum()), int(year.isna().sum())) == (8085, 180)


def test_near_duplicates_are_dropped(cleaned: CleaningResult) -> None:
    dedup = report(cleaned, "deduplicate")

    assert dedup.rows_dropped == 22
    assert dedup.examples[0] == "Jane Eyre | Brontë, Charlotte | 1897"
    assert cleaned.frame["identifier"].is_unique


def test_places_are_normalised(cleaned: CleaningResult) -> None:
    place = cleaned.frame["place"]

    assert int((place == "London").sum()) == 4123
    assert int(place.isna().sum()) == 19  # the MARC code "enk", mapped to null
    assert report(cleaned, "map_values").changed == 32


@pytest.mark.parametrize(
    ("identifier", "date_raw", "year", "place"),
    [
        ("000000206", "1879 [1878]", 1879, "London"),
        ("000000216", "1868", 1868, "London"),  # "London; Virtue & Yorston"
        ("000000667", None, None, "Oxford"),  # "pp. 40. G. Bryan & Co: Oxford, 1898"
        ("000000874", "1676", 1676, "London"),  # "London]"
        ("000193942", "[1880.]", 1880, "London"),
        ("000001929", "1839, 38-54", 1839, "Amsterdam"),
        ("001257399", "1874", 1874, "London"),  # "Londres"
    ],
)
def test_spot_values(
    cleaned: CleaningResult, identifier: str, date_raw: str | None, year: int | None, place: str
) -> None:
    frame = cleaned.frame
    (row,) = frame.loc[frame["identifier"] == identifier].to_dict("records")
    row = {key: None if pd.isna(value) else value for key, value in row.items()}

    assert (row["date_raw"], row["year"], row["place"]) == (date_raw, year, place)


def test_profile_of_the_cleaned_books(cleaned: CleaningResult) -> None:
    profile = profile_frame(cleaned.frame, cleaned.pii_kinds)

    assert profile["row_count"] == 8265
    year = profile["columns"]["year"]
    assert (year["dtype"], year["min"], year["max"], year["null_count"]) == ("int", 1510, 1915, 180)
    assert profile["columns"]["place"]["top_values"][0] == {"value": "London", "count": 4123}
    assert profile["columns"]["identifier"]["distinct_count"] == 8265
    assert not any(column["pii_kind"] for column in profile["columns"].values())
    assert pd.isna(cleaned.frame.loc[0, "edition"])
