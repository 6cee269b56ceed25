"""Read a raw table (CSV/TSV, JSON lines, Parquet, Excel) from bytes into a pandas DataFrame.

Raw text stays text: CSV columns are read as ``string[pyarrow]`` so nothing is mis-inferred (zero-padded
ids, codes that look like numbers); typed formats (Parquet, JSON, Excel) keep their types as nullable or
Arrow-backed dtypes. Every failure is a :class:`SourceReadError` naming the file, where in it the problem
is, and what to change (usually a ``source.*`` field of the dataset spec).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final
from urllib.parse import urlsplit

import charset_normalizer
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ods.domain.dataset_spec import SourceSpec
from ods.errors import OdsError

SNIFF_CHARS: Final = 64 * 1024
SNIFF_DELIMITERS: Final = ",;\t|"
TEXT_DTYPE: Final = pd.StringDtype("pyarrow")

FORMAT_BY_EXTENSION: Final[dict[str, str]] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
}
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_UTF8_MULTIBYTE: Final = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_HIGH_BYTES: Final = bytes(range(128, 256))
_OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SUPPORTED: Final = " ".join(FORMAT_BY_EXTENSION)


class SourceReadError(OdsError):
    """A raw table cannot be read: missing, empty, undecodable, malformed or of an unsupported format."""


def read_table(data: bytes | BinaryIO | Path, *, name: str, source: SourceSpec) -> pd.DataFrame:
    """Read a whole table. ``name`` (file name or URI) appears in messages and, with ``source.format``
    ``auto``, picks the format by its extension (.csv .tsv .txt .jsonl .ndjson .json .parquet .xlsx .xls;
    a trailing .gz is decompressed)."""
    raw = _read_bytes(data, name)
    if raw.startswith(b"\x1f\x8b"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise SourceReadError(
                f"{name}: is not a valid gzip file ({exc}); re-compress or upload it again"
            ) from exc
    if not raw:
        raise SourceReadError(f"{name} is empty (0 bytes); check the upload finished and source.uri is right")
    fmt = source.format if source.format != "auto" else detect_format(name, raw)
    if fmt in ("csv", "tsv"):
        frame = _read_delimited(raw, name, source, tab=fmt == "tsv")
    elif fmt == "jsonl":
        frame = _read_json(raw, name, source)
    elif fmt == "parquet":
        frame = _read_parquet(raw, name)
    else:
        frame = _read_excel(raw, name, source)
    if len(frame) == 0:
        raise SourceReadError(f"{name} has no data rows; a table needs at least one row below its header")
    return frame


def detect_format(name: str, raw: bytes) -> str:
    """The format for ``source.format: auto``: by extension, else by the first bytes."""
    suffix = _suffix(name)
    if suffix in FORMAT_BY_EXTENSION:
        return FORMAT_BY_EXTENSION[suffix]
    if raw.startswith(b"PAR1"):
        return "parquet"
    if raw.startswith((b"PK\x03\x04", _OLE_MAGIC)):
        return "excel"
    if not suffix:
        return "jsonl" if raw.lstrip()[:1] in (b"{", b"[") else "csv"
    raise SourceReadError(
        f"{name}: unsupported format {suffix!r}; supported extensions: {_SUPPORTED} "
        "(or set source.format to csv, tsv, jsonl, parquet or excel)"
    )


def _suffix(name: str) -> str:
    path = urlsplit(name).path if "://" in name else name.replace("\\", "/")
    pure = PurePosixPath(path)
    suffix = pure.suffix.lower()
    if suffix == ".gz":
        suffix = PurePosixPath(pure.stem).suffix.lower()
    return suffix


def _read_bytes(data: bytes | BinaryIO | Path, name: str) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, Path):
        if not data.exists():
            raise SourceReadError(f"{name}: file not found at {data}; check source.uri")
        if not data.is_file():
            raise SourceReadError(f"{name}: {data} is not a file; point source.uri at a file")
        try:
            return data.read_bytes()
        except OSError as exc:
            raise SourceReadError(f"{name}: cannot read {data} ({exc.strerror or exc})") from exc
    return bytes(data.read())


# --- text decoding -----------------------------------------------------------------------------------


def decode_text(raw: bytes, name: str, encoding: str = "auto") -> tuple[str, str]:
    """(text, encoding used). ``auto``: a BOM, else strict UTF-8, else charset-normalizer's best guess."""
    if encoding != "auto":
        return _strict_decode(raw, encoding, name, guessed=False), encoding
    for bom, bom_encoding in _BOMS:
        if raw.startswith(bom):
            return _strict_decode(raw, bom_encoding, name, guessed=True), bom_encoding
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if _mostly_utf8(raw):
            raise SourceReadError(_undecodable(raw, name, "utf-8", exc, guessed=True)) from exc
    best = charset_normalizer.from_bytes(raw).best()
    if best is None:
        raise SourceReadError(
            f"{name}: cannot tell the text encoding (not UTF-8, and no other encoding fits); "
            "set source.encoding, e.g. cp1252, gb18030 or utf-16"
        )
    return _strict_decode(raw, best.encoding, name, guessed=True), best.encoding


def _mostly_utf8(raw: bytes) -> bool:
    """Valid multi-byte UTF-8 sequences outnumber stray high bytes: UTF-8 with a few corrupt bytes,
    which a guessed single-byte encoding would silently turn into mojibake."""
    remainder, sequences = _UTF8_MULTIBYTE.subn(b"", raw)
    stray = len(remainder) - len(remainder.translate(None, _HIGH_BYTES))
    return sequences > stray


def _strict_decode(raw: bytes, encoding: str, name: str, *, guessed: bool) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SourceReadError(_undecodable(raw, name, encoding, exc, guessed=guessed)) from exc


def _undecodable(raw: bytes, name: str, encoding: str, exc: UnicodeDecodeError, *, guessed: bool) -> str:
    offset = exc.start
    where = f"byte offset {offset} (0x{raw[offset]:02x})"
    if not encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        line = raw.count(b"\n", 0, offset) + 1
        where += f", line {line}"
    how = "detected" if guessed else "from source.encoding"
    return (
        f"{name}: cannot decode {where} as {encoding} ({how}); set source.encoding to the file's "
        "encoding (e.g. cp1252, gb18030, utf-16) or repair the file"
    )


# --- CSV / TSV ---------------------------------------------------------------------------------------


def sniff_delimiter(text: str) -> str:
    """The delimiter ``csv.Sniffer`` finds among , ; tab | in the first 64 KiB, else ','."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=SNIFF_DELIMITERS).delimiter
    except csv.Error:
        return ","


_DECODE_CHUNK: Final = 4 * 1024 * 1024
# Arrow's default 1 MiB blocks make every text column ~100 chunks per 100 MB, and the cleaning rules pay
# per chunk; 16 MiB blocks still parse in parallel.
_CSV_BLOCK_BYTES: Final = 16 * 1024 * 1024


def _utf8_head(raw: bytes, encoding: str) -> tuple[str, str, bool] | None:
    """For UTF-8 text (what ``decode_text`` would pick as utf-8 or utf-8-sig): (the first
    ``SNIFF_CHARS + 1`` characters, the encoding, whether any character is not white space), checked
    chunk by chunk so the whole decoded text never exists at once. None for any other case, and for
    bytes that do not decode, which take the full path with its messages."""
    if encoding == "auto":
        codec = next((bom_encoding for bom, bom_encoding in _BOMS if raw.startswith(bom)), "utf-8")
    else:
        codec = encoding
    if codec not in ("utf-8", "utf-8-sig"):
        return None
    decoder = codecs.getincrementaldecoder(codec)()
    view = memoryview(raw)
    head = ""
    blank = True
    try:
        for start in range(0, len(raw), _DECODE_CHUNK):
            piece = decoder.decode(view[start : start + _DECODE_CHUNK])
            if len(head) <= SNIFF_CHARS:
                head += piece[: SNIFF_CHARS + 1 - len(head)]
            if blank and piece.strip():
                blank = False
        piece = decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    if len(head) <= SNIFF_CHARS:
        head += piece[: SNIFF_CHARS + 1 - len(head)]
    return head, codec, not (blank and not piece.strip())


def _read_delimited(raw: bytes, name: str, source: SourceSpec, *, tab: bool) -> pd.DataFrame:
    fast = _utf8_head(raw, source.encoding)
    full_text: str | None = None
    if fast is None:
        full_text, encoding = decode_text(raw, name, source.encoding)
        text, filled = full_text[: SNIFF_CHARS + 1], bool(full_text.strip())
    else:
        text, encoding, filled = fast
    if not filled:
        raise SourceReadError(f"{name} has no data rows; it holds only white space")
    if tab:
        delimiter = "\t" if source.delimiter == "auto" else source.delimiter
    else:
        delimiter = sniff_delimiter(text) if source.delimiter == "auto" else source.delimiter
    if encoding in ("utf-8", "utf-8-sig"):
        encoded = raw
        utf8 = memoryview(raw)[3:] if encoding == "utf-8-sig" else memoryview(raw)  # no copies
    else:
        assert full_text is not None
        encoded = full_text.encode("utf-8")
        utf8 = memoryview(encoded)
    del full_text
    # A line break can only be part of a value inside quotes; without any quote character the parser
    # may split lines without tracking quoting, which is a good deal faster.
    quoted = encoded.find(b'"') >= 0
    del encoded
    if bytes(utf8[-1:]) != b"\n":
        # Arrow reads a header-only file without a final newline as no file at all
        utf8 = memoryview(bytes(utf8) + b"\n")
    header = next(csv.reader(io.StringIO(text[:SNIFF_CHARS], newline=""), delimiter=delimiter), [])
    bad_rows: list[pacsv.InvalidRow] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row)
        return "error"

    def read(text_type: pa.DataType) -> pa.Table:
        bad_rows.clear()
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(utf8)),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, block_size=_CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=quoted,
                invalid_row_handler=on_invalid_row,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{index}": text_type for index in range(max(len(header), 1))},
                null_values=["", *source.null_values],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    try:
        try:
            # large_string is what pandas keeps text in: no conversion copy of every column afterwards
            table = read(pa.large_string())
        except pa.ArrowInvalid:
            table = read(pa.string())  # the outcome (and message) of the plain string read
    except pa.ArrowInvalid as exc:
        if bad_rows:
            full_text = decode_text(raw, name, source.encoding)[0]
            raise SourceReadError(_ragged_message(full_text, name, delimiter, bad_rows[0])) from exc
        raise SourceReadError(
            f"{name}: cannot parse as delimited text with delimiter {delimiter!r} ({exc}); "
            "check quoting or set source.delimiter"
        ) from exc
    if table.num_rows <= 1:
        raise SourceReadError(f"{name} has no data rows; a table needs at least one row below its header")
    names = list(table.slice(0, 1).to_pylist()[0].values())
    table = table.slice(1).rename_columns(_unique_names(names))
    return _to_frame(table)


def _ragged_message(text: str, name: str, delimiter: str, row: pacsv.InvalidRow) -> str:
    """Name the first record whose field count differs from the header's, with its line number."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, [])
    start = reader.line_num + 1
    for record in reader:
        if record and len(record) != len(header):
            return _ragged(name, start, len(header), len(record), delimiter)
        start = reader.line_num + 1
    snippet = (row.text or "")[:80]
    return _ragged(name, None, row.expected_columns, row.actual_columns, delimiter) + f" Row: {snippet!r}"


def _ragged(name: str, line: int | None, expected: int, found: int, delimiter: str) -> str:
    where = f"line {line}" if line is not None else "a row"
    return (
        f"{name}: {where} has {found} fields but the header has {expected} (delimiter {delimiter!r}); "
        "fix that row (quote values that contain the delimiter) or set source.delimiter if "
        f"{delimiter!r} is not the separator."
    )


def _unique_names(names: list[Any]) -> list[str]:
    """Header names as written; blanks become 'Unnamed: i', repeats get '.1', '.2' (like pandas)."""
    result: list[str] = []
    seen: set[str] = set()
    for index, value in enumerate(names):
        base = f"Unnamed: {index}" if value is None or str(value) == "" else str(value)
        candidate, counter = base, 0
        while candidate in seen:
            counter += 1
            candidate = f"{base}.{counter}"
        seen.add(candidate)
        result.append(candidate)
    return result


# --- JSON --------------------------------------------------------------------------------------------


def _read_json(raw: bytes, name: str, source: SourceSpec) -> pd.DataFrame:
    text, _ = decode_text(raw, name, source.encoding)
    body = text.lstrip()
    records: list[dict[str, Any]] = []
    if body.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceReadError(
                f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
        for position, item in enumerate(loaded if isinstance(loaded, list) else [loaded]):
            if not isinstance(item, dict):
                raise SourceReadError(
                    f"{name}: item {position} of the JSON array is a {type(item).__name__}, not an object; "
                    "a table needs one object per row"
                )
            records.append(item)
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceReadError(
                    f"{name}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    "each line must hold one JSON object"
                ) from exc
            if not isinstance(item, dict):
                raise SourceReadError(
                    f"{name}: line {number} holds a JSON {type(item).__name__}, not an object; "
                    "each line must hold one JSON object"
                )
            records.append(item)
    if not records:
        raise SourceReadError(f"{name} has no data rows; it holds no JSON objects")
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    arrays = {column: _json_column([record.get(column) for record in records]) for column in columns}
    return _to_frame(pa.table(arrays))


def _json_column(values: list[Any]) -> pa.Array:
    """Arrow's inferred type, or text when a column mixes types (numbers and strings, ...)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [value if value is None or isinstance(value, str) else json.dumps(value) for value in values],
            type=pa.string(),
        )


# --- Parquet and Excel -------------------------------------------------------------------------------


def _read_parquet(raw: bytes, name: str) -> pd.DataFrame:
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SourceReadError(
            f"{name}: not a readable Parquet file ({exc}); re-export it, or set source.format if it "
            "is not Parquet"
        ) from exc
    return _to_frame(table)


def _read_excel(raw: bytes, name: str, source: SourceSpec) -> pd.DataFrame:
    if raw.startswith(_OLE_MAGIC) or _suffix(name) == ".xls":
        raise SourceReadError(
            f"{name}: legacy .xls workbooks are not supported (the xlrd reader is not installed); "
            "save the sheet as .xlsx or .csv"
        )
    try:
        from openpyxl.utils.exceptions import InvalidFileException

        workbook = pd.ExcelFile(io.BytesIO(raw), engine="openpyxl")
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise SourceReadError(
            f"{name}: not a readable .xlsx workbook ({exc}); re-save it from Excel, or set source.format"
        ) from exc
    with workbook:
        sheets = [str(sheet) for sheet in workbook.sheet_names]
        sheet = 0 if source.sheet is None else source.sheet
        if isinstance(sheet, int) and not 0 <= sheet < len(sheets):
            raise SourceReadError(
                f"{name}: has no sheet number {sheet} (sheets, counted from 0: {', '.join(sheets)}); "
                "set source.sheet"
            )
        if isinstance(sheet, str) and sheet not in sheets:
            raise SourceReadError(
                f"{name}: has no sheet {sheet!r}; sheets: {', '.join(sheets)}; set source.sheet"
            )
        try:
            frame = pd.read_excel(workbook, sheet_name=sheet, dtype=object)
        except (KeyError, ValueError, OSError) as exc:
            raise SourceReadError(f"{name}: cannot read sheet {sheet!r} ({exc})") from exc
    frame.columns = _unique_names([None if str(c).startswith("Unnamed: ") else c for c in frame.columns])
    return _excel_types(frame)


_EXCEL_TYPED: Final = frozenset({"integer", "floating", "mixed-integer-float", "boolean"})


def _excel_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable dtypes for number, bool and date columns; a column holding any text (even next to
    numbers, like '001' and 2) becomes ``string[pyarrow]`` with each cell as written."""
    columns: dict[str, pd.Series] = {}
    for column in frame.columns:
        values = frame[column]
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred in ("datetime", "datetime64"):
            columns[column] = pd.to_datetime(values).astype("datetime64[us]")
        elif inferred == "date":
            columns[column] = values.astype(pd.ArrowDtype(pa.date32()))
        elif inferred in _EXCEL_TYPED:
            columns[column] = values.infer_objects().convert_dtypes(dtype_backend="numpy_nullable")
        else:
            columns[column] = values.map(lambda v: v if pd.isna(v) else str(v)).astype(TEXT_DTYPE)
    return pd.DataFrame(columns, index=frame.index)


# --- Arrow to pandas ---------------------------------------------------------------------------------

_NULLABLE: Final[dict[pa.DataType, Any]] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.float32(): pd.Float32Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): TEXT_DTYPE,
    pa.large_string(): TEXT_DTYPE,
}


def _pandas_dtype(arrow_type: pa.DataType) -> Any:
    if arrow_type in _NULLABLE:
        return _NULLABLE[arrow_type]
    if pa.types.is_timestamp(arrow_type):
        return None  # numpy datetime64[unit] (tz-aware when the data says so)
    return pd.ArrowDtype(arrow_type)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Nullable pandas dtypes for scalars, Arrow dtypes for dates, decimals and nested values."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, column.type.value_type)
        columns.append(column)
    table = pa.Table.from_arrays(
        columns,
        schema=pa.schema(
            [pa.field(f.name, c.type) for f, c in zip(table.schema, columns, strict=True)],
            metadata=table.schema.metadata,
        ),
    )
    frame = table.to_pandas(types_mapper=_pandas_dtype)
    if isinstance(frame.index, pd.RangeIndex):
        return frame.reset_index(drop=True)
    return frame.reset_index()
