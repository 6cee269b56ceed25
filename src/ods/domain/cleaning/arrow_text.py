"""Byte-level scans of Arrow string arrays: they find the few values a text rule would change, so the
rule's Arrow function runs on those alone and unchanged columns are recognised without a comparison."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets of the array's values, its UTF-8 data bytes) without copying."""
    _, offsets_buffer, data_buffer = values.buffers()[:3]
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[
        values.offset : values.offset + len(values) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, dtype=np.uint8)
    )
    return offsets, data


def per_chunk(
    function: Callable[[pa.Array], pa.Array | pa.ChunkedArray], values: pa.ChunkedArray
) -> pa.ChunkedArray:
    """``function`` applied to every chunk; ``values`` itself when no chunk changed."""
    chunks = values.chunks
    results = [function(chunk) for chunk in chunks]
    if all(result is chunk for result, chunk in zip(results, chunks, strict=True)):
        return values
    return pa.chunked_array(results, type=values.type)


def is_text(values: pa.Array) -> bool:
    return bool(pa.types.is_string(values.type) or pa.types.is_large_string(values.type))


def replace_rows(
    values: pa.Array,
    suspect: np.ndarray,
    offsets: np.ndarray,
    function: Callable[[pa.Array], pa.Array],
) -> pa.Array:
    """``function`` applied only to the values holding a ``suspect`` byte (``suspect`` covers the data
    buffer from offset 0); the others are kept as they are. ``values`` itself when none is suspect."""
    start = int(offsets[0])
    positions = np.flatnonzero(suspect[start:]) + start
    if len(positions) == 0:
        return values
    rows = np.zeros(len(values), dtype=bool)
    rows[np.searchsorted(offsets, positions, side="right") - 1] = True
    mask = pa.array(rows, type=pa.bool_())
    return pc.replace_with_mask(values, mask, function(pc.filter(values, mask)))
