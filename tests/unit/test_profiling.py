"""Column profiles: logical types, null and distinct counts, ranges, frequent values, personal data."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ods.domain.profiling import logical_type, profile_frame

TEXT = "string[pyarrow]"


def typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.array([1, 2, 3, 4, None], dtype="Int64"),
            "price": pd.array([1.5, 2.5, None, 4.0, 2.5], dtype="Float64"),
            "amount": pd.array(
                [Decimal("1.10"), Decimal("2.20"), None, Decimal("3.30"), Decimal("1.10")],
                dtype=pd.ArrowDtype(pa.decimal128(10, 2)),
            ),
            "active": pd.array([True, False, True, None, True], dtype="boolean"),
            "day": pd.array(
                [date(2020, 1, 2), None, date(1879, 5, 6), date(2021, 12, 31), date(2020, 1, 2)],
                dtype=pd.ArrowDtype(pa.date32()),
            ),
            "at": pd.to_datetime(["2020-01-01 10:00", None, "2019-06-30 23:59", None, None]).astype(
                "datetime64[us]"
            ),
            "city": pd.Series(["London", "Paris", "London", None, "Berlin"], dtype=TEXT),
            "email": pd.Series([f"user{i}@example.com" for i in range(5)], dtype=TEXT),
        }
    )


def test_profile_of_each_logical_type() -> None:
    profile = profile_frame(typed_frame())
    columns = profile["columns"]

    assert (profile["row_count"], profile["column_count"]) == (5, 8)
    assert {name: column["dtype"] for name, column in columns.items()} == {
        "id": "int", "price": "float", "amount": "decimal", "active": "bool",
        "day": "date", "at": "timestamp", "city": "string", "email": "string",
    }  # fmt: skip
    assert columns["id"] == {
        "dtype": "int", "null_count": 1, "null_rate": 0.2, "distinct_count": 4,
        "min": 1, "max": 4, "mean": 2.5, "top_values": None, "pii_kind": None,
    }  # fmt: skip
    assert (columns["price"]["min"], columns["price"]["max"], columns["price"]["mean"]) == (1.5, 4.0, 2.625)
    assert columns["price"]["distinct_count"] == 3
    assert (columns["amount"]["min"], columns["amount"]["max"], columns["amount"]["mean"]) == (
        "1.10",
        "3.30",
        "1.925",
    )
    assert columns["active"]["top_values"] == [{"value": True, "count": 3}, {"value": False, "count": 1}]
    assert columns["active"]["mean"] == 0.75
    assert (columns["day"]["min"], columns["day"]["max"], columns["day"]["distinct_count"]) == (
        "1879-05-06",
        "2021-12-31",
        3,
    )
    assert (columns["at"]["min"], columns["at"]["max"]) == ("2019-06-30T23:59:00", "2020-01-01T10:00:00")
    assert columns["city"]["top_values"] == [
        {"value": "London", "count": 2},
        {"value": "Paris", "count": 1},
        {"value": "Berlin", "count": 1},
    ]
    assert columns["city"]["distinct_count"] == 3
    assert columns["city"]["null_rate"] == 0.2
    assert columns["email"]["pii_kind"] == "email"
    assert columns["city"]["pii_kind"] is None


def test_profile_is_json_serialisable() -> None:
    profile = profile_frame(typed_frame())

    assert json.loads(json.dumps(profile, allow_nan=False)) == profile


def test_top_values_are_capped_at_five() -> None:
    frame = pd.DataFrame({"s": pd.Series(list("aaaabbbccdefgh"), dtype=TEXT)})

    top = profile_frame(frame)["columns"]["s"]["top_values"]

    assert [item["value"] for item in top] == ["a", "b", "c", "d", "e"]
    assert [item["count"] for item in top] == [4, 3, 2, 1, 1]


def test_given_pii_kinds_override_detection() -> None:
    frame = pd.DataFrame(
        {"contact": pd.Series(["a1b2c3d4e5f6a7b8"], dtype=TEXT), "note": pd.Series(["x"], dtype=TEXT)}
    )

    profile = profile_frame(frame, pii_kinds={"contact": "email"})

    assert profile["columns"]["contact"]["pii_kind"] == "email"
    assert profile["columns"]["note"]["pii_kind"] is None


def test_empty_and_all_null_columns() -> None:
    empty = profile_frame(pd.DataFrame({"a": pd.Series([], dtype=TEXT)}))
    nulls = profile_frame(pd.DataFrame({"n": pd.array([None, None], dtype="Int64")}))

    assert empty["row_count"] == 0
    assert empty["columns"]["a"]["null_rate"] == 0.0
    assert nulls["columns"]["n"]["null_rate"] == 1.0
    assert (nulls["columns"]["n"]["min"], nulls["columns"]["n"]["mean"]) == (None, None)


@pytest.mark.parametrize(
    ("series", "kind"),
    [
        (pd.Series([1, 2]), "int"),
        (pd.Series([1.0, np.nan]), "float"),
        (pd.Series([True, False]), "bool"),
        (pd.Series(["a", None], dtype=object), "string"),
        (pd.Series(["a", "b"]), "string"),  # pandas' default str dtype
        (pd.Series([Decimal("1.0")], dtype=object), "decimal"),
        (pd.Series([date(2020, 1, 1)], dtype=object), "date"),
        (pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("UTC")), "timestamp"),
        (pd.Series([[1, 2]], dtype=object), "other"),
        (pd.Series([1], dtype=pd.ArrowDtype(pa.int32())), "int"),
        (pd.Series(["x"], dtype=pd.ArrowDtype(pa.large_string())), "string"),
        (pd.Series([[1]], dtype=pd.ArrowDtype(pa.list_(pa.int64()))), "other"),
    ],
)
def test_logical_types(series: pd.Series, kind: str) -> None:
    assert logical_type(series) == kind
