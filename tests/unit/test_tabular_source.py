"""Reading raw tables: every format, encodings and delimiters, and a useful message for each bad input."""

from __future__ import annotations

import codecs
import gzip
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ods.adapters.tabular.source import SourceReadError, read_table
from ods.domain.dataset_spec import SourceSpec

TEXT = "string[pyarrow]"
ACCENTED = "name;city;amount\nJosé;Zürich;3,50\nRenée;Besançon;4,10\nCafé € menu;Nîmes;5\n"


def read(data: bytes | Path | io.BytesIO, name: str, **source: Any) -> pd.DataFrame:
    return read_table(data, name=name, source=SourceSpec(uri=name, **source))


def read_error(data: bytes | Path, name: str, **source: Any) -> str:
    with pytest.raises(SourceReadError) as caught:
        read(data, name, **source)
    return str(caught.value)


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [
        {key: None if pd.isna(value) else value for key, value in row.items()}
        for row in frame.to_dict("records")
    ]


# --- CSV and friends ---------------------------------------------------------------------------------


def test_csv_columns_stay_text_with_header_names_kept(tmp_path: Path) -> None:
    path = tmp_path / "books.csv"
    path.write_text(
        'Identifier,Date of Publication,Title\n000000206,1879 [1878],"Walter Forbes, a novel"\n000000216,,"Two\nlines"\n',
        encoding="utf-8",
    )

    frame = read(path, "books.csv")

    assert list(frame.columns) == ["Identifier", "Date of Publication", "Title"]
    assert all(dtype == TEXT for dtype in frame.dtypes)
    assert records(frame) == [
        {"Identifier": "000000206", "Date of Publication": "1879 [1878]", "Title": "Walter Forbes, a novel"},
        {"Identifier": "000000216", "Date of Publication": None, "Title": "Two\nlines"},
    ]


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(ACCENTED.encode("utf-16"), id="utf-16 with BOM"),
        pytest.param(ACCENTED.encode("utf-16-le"), id="utf-16-le without BOM"),
        pytest.param(ACCENTED.encode("cp1252"), id="cp1252"),
        pytest.param(codecs.BOM_UTF8 + ACCENTED.encode("utf-8"), id="utf-8 with BOM"),
        pytest.param(ACCENTED.encode("utf-32"), id="utf-32 with BOM"),
    ],
)
def test_encodings_are_detected(encoded: bytes) -> None:
    frame = read(encoded, "prices.csv")

    assert list(frame.columns) == ["name", "city", "amount"]
    assert records(frame)[2] == {"name": "Café € menu", "city": "Nîmes", "amount": "5"}
    assert frame["city"].tolist() == ["Zürich", "Besançon", "Nîmes"]


def test_explicit_encoding_is_used() -> None:
    frame = read("name\nŁódź\n".encode("cp1250"), "cities.csv", encoding="cp1250")

    assert frame["name"].tolist() == ["Łódź"]


@pytest.mark.parametrize(
    ("content", "name", "source", "expected"),
    [
        (b"id\tname\n007\tx, y\n", "a.tsv", {}, {"id": "007", "name": "x, y"}),
        (b"id;name\n007;x, y\n", "a.csv", {}, {"id": "007", "name": "x, y"}),
        (b"id|name\n007|x\n", "a.txt", {}, {"id": "007", "name": "x"}),
        (b"id;name\n007;x\n", "a.csv", {"delimiter": ";"}, {"id": "007", "name": "x"}),
        (b"id\tname\n007\tx\n", "a.dat", {"format": "tsv"}, {"id": "007", "name": "x"}),
    ],
)
def test_delimiters_are_sniffed_or_taken_from_the_spec(
    content: bytes, name: str, source: dict[str, str], expected: dict[str, str]
) -> None:
    assert records(read(content, name, **source)) == [expected]


def test_quoted_values_keep_line_breaks_and_files_without_quotes_read_the_same() -> None:
    quoted = read(b'id,note\n1,"two\nlines"\n2,"a, b"\n', "q.csv")
    plain = read(b"id,note\n1,one line\n2,b\n", "p.csv")

    assert records(quoted) == [{"id": "1", "note": "two\nlines"}, {"id": "2", "note": "a, b"}]
    assert records(plain) == [{"id": "1", "note": "one line"}, {"id": "2", "note": "b"}]


def test_only_empty_cells_and_listed_null_values_read_as_null() -> None:
    content = b"a,b,c\nNA,,null\n"

    default = read(content, "n.csv")
    listed = read(content, "n.csv", null_values=["NA", "null"])

    assert records(default) == [{"a": "NA", "b": None, "c": "null"}]
    assert records(listed) == [{"a": None, "b": None, "c": None}]


def test_blank_and_repeated_header_names_are_made_unique() -> None:
    frame = read(b"a,a,\n1,2,3\n", "h.csv")

    assert list(frame.columns) == ["a", "a.1", "Unnamed: 2"]


def test_binary_streams_and_gzip_are_read() -> None:
    assert records(read(io.BytesIO(b"a\n1\n"), "s.csv")) == [{"a": "1"}]
    assert records(read(gzip.compress(b"a,b\n1,2\n"), "s.csv.gz")) == [{"a": "1", "b": "2"}]


# --- JSON lines, Parquet, Excel ----------------------------------------------------------------------


def test_jsonl_keeps_json_types_and_tolerates_blank_lines() -> None:
    content = b'{"id": 1, "name": "x", "tags": ["a"]}\n\n{"id": 2, "score": 2.5, "name": 3}\n'

    frame = read(content, "rows.jsonl")

    assert list(frame.columns) == ["id", "name", "tags", "score"]
    assert str(frame["id"].dtype) == "Int64"
    assert frame["name"].dtype == TEXT  # a string and a number: text, as written
    assert frame["name"].tolist() == ["x", "3"]
    assert str(frame["score"].dtype) == "Float64"
    assert records(frame)[1]["score"] == 2.5


def test_json_array_of_objects() -> None:
    frame = read(b'[{"a": true}, {"a": false}]', "rows.json")

    assert str(frame["a"].dtype) == "boolean"
    assert frame["a"].tolist() == [True, False]


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "id": pa.array(["001", None]),
            "n": pa.array([1, None], pa.int64()),
            "day": pa.array([date(2020, 1, 2), None], pa.date32()),
            "cat": pa.array(["x", "y"]).dictionary_encode(),
        }
    )
    pq.write_table(table, path)

    frame = read(path, "t.parquet")

    assert frame["id"].dtype == TEXT
    assert str(frame["n"].dtype) == "Int64"
    assert frame["day"].dtype == pd.ArrowDtype(pa.date32())
    assert frame["cat"].dtype == TEXT
    assert records(frame)[0] == {"id": "001", "n": 1, "day": date(2020, 1, 2), "cat": "x"}


def write_workbook(path: Path) -> None:
    workbook = openpyxl.Workbook()
    books = workbook.active
    assert books is not None
    books.title = "Books"
    books.append(["id", "title", "copies", "added"])
    books.append(["001", "Jane Eyre", 3, datetime(2020, 1, 2)])
    books.append([2, "Ulysses", None, None])
    other = workbook.create_sheet("Places")
    other.append(["place"])
    other.append(["London"])
    workbook.save(path)


def test_excel_first_sheet_by_default_text_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "books.xlsx"
    write_workbook(path)

    frame = read(path, "books.xlsx")

    assert list(frame.columns) == ["id", "title", "copies", "added"]
    assert frame["id"].tolist() == ["001", "2"]  # a text cell next to a number: text, zero kept
    assert str(frame["copies"].dtype) == "Int64"
    assert str(frame["added"].dtype) == "datetime64[us]"
    assert records(frame)[0]["added"] == pd.Timestamp("2020-01-02")


@pytest.mark.parametrize("sheet", ["Places", 1])
def test_excel_sheet_by_name_or_index(tmp_path: Path, sheet: str | int) -> None:
    path = tmp_path / "books.xlsx"
    write_workbook(path)

    assert records(read(path, "books.xlsx", sheet=sheet)) == [{"place": "London"}]


# --- bad inputs --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = read_error(tmp_path / "nope.csv", "nope.csv")

    assert message == f"nope.csv: file not found at {tmp_path / 'nope.csv'}; check source.uri"


def test_empty_file() -> None:
    assert read_error(b"", "e.csv") == (
        "e.csv is empty (0 bytes); check the upload finished and source.uri is right"
    )


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"a,b,c\n", "h.csv"), (b"a,b,c", "h.csv"), (b"\n\n  \n", "w.csv"), (b"\n", "e.jsonl")],
)
def test_header_only_or_blank_files_have_no_data_rows(content: bytes, name: str) -> None:
    assert f"{name} has no data rows" in read_error(content, name)


def test_undecodable_bytes_name_offset_line_and_encoding() -> None:
    message = read_error(b"a,b\n1,\xff\n", "bad.csv", encoding="utf-8")

    assert message == (
        "bad.csv: cannot decode byte offset 6 (0xff), line 2 as utf-8 (from source.encoding); set "
        "source.encoding to the file's encoding (e.g. cp1252, gb18030, utf-16) or repair the file"
    )


def test_a_corrupt_byte_in_a_utf8_file_is_reported_not_guessed_around() -> None:
    content = "title\n“Curly” quotes\nZürich\n".encode() + b"bad \xff byte\n"

    message = read_error(content, "mostly_utf8.csv")

    assert message.startswith(
        "mostly_utf8.csv: cannot decode byte offset 37 (0xff), line 4 as utf-8 (detected)"
    )


@pytest.mark.parametrize(
    ("content", "line", "found"),
    [
        (b'a,b,c\n1,2,3\n"x\ny",5,6\n7,8,9,10\n', 5, 4),
        (b"a,b,c\n1,2,3\n4,5\n", 3, 2),
    ],
)
def test_ragged_rows_name_the_first_bad_line(content: bytes, line: int, found: int) -> None:
    message = read_error(content, "ragged.csv")

    assert message == (
        f"ragged.csv: line {line} has {found} fields but the header has 3 (delimiter ','); fix that row "
        "(quote values that contain the delimiter) or set source.delimiter if ',' is not the separator."
    )


def test_unsupported_format() -> None:
    message = read_error(b"%PDF-1.7", "report.pdf")

    assert message.startswith("report.pdf: unsupported format '.pdf'; supported extensions: .csv .txt")
    assert message.endswith("(or set source.format to csv, tsv, jsonl, parquet or excel)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"a": 1}\n{"a": 2,}\n',
            "bad.jsonl: line 2 is not valid JSON (Expecting property name enclosed in double quotes at "
            "column 9); each line must hold one JSON object",
        ),
        (
            b'{"a": 1}\n\n[1, 2]\n',
            "bad.jsonl: line 3 holds a JSON list, not an object; each line must hold one JSON object",
        ),
    ],
)
def test_invalid_json_lines(content: bytes, message: str) -> None:
    assert read_error(content, "bad.jsonl") == message


def test_corrupt_parquet(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3]}), buffer)
    truncated = buffer.getvalue()[:-20]

    message = read_error(truncated, "t.parquet")

    assert message.startswith("t.parquet: not a readable Parquet file (")
    assert message.endswith("); re-export it, or set source.format if it is not Parquet")


def test_corrupt_excel_and_missing_sheets(tmp_path: Path) -> None:
    path = tmp_path / "books.xlsx"
    write_workbook(path)

    assert read_error(b"PK\x03\x04 not really a zip", "c.xlsx").startswith(
        "c.xlsx: not a readable .xlsx workbook ("
    )
    assert read_error(path, "books.xlsx", sheet="Authors") == (
        "books.xlsx: has no sheet 'Authors'; sheets: Books, Places; set source.sheet"
    )
    assert read_error(path, "books.xlsx", sheet=2) == (
        "books.xlsx: has no sheet number 2 (sheets, counted from 0: Books, Places); set source.sheet"
    )
    assert "legacy .xls workbooks are not supported" in read_error(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old.xls"
    )
