"""The ``mask_pii`` rule: mask or hash personal data (vectorised for ASCII e-mails, phones and cards)."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ods.domain.cleaning.arrow_text import is_text, string_buffers
from ods.domain.cleaning.distinct import take_codes
from ods.domain.cleaning.frames import TEXT_DTYPE, as_text, require_column, text_array, with_columns
from ods.domain.cleaning.report import RuleReport
from ods.domain.dataset_spec import MaskPiiRule, PiiKind
from ods.domain.pii import GENERIC_MASK, detect_pii_kind, protect_values
from ods.domain.profiling import logical_type, sample_values


def mask_pii(
    frame: pd.DataFrame, rule: MaskPiiRule, *, salt: str = "", where: str = "mask_pii"
) -> tuple[pd.DataFrame, RuleReport]:
    """Mask or hash personal data. ``columns: auto`` treats every text column whose name or content
    shows one of ``kinds``; named columns are protected whatever they hold (unknown kinds fully masked)."""
    found: dict[str, PiiKind | None] = {}
    if rule.columns == "auto":
        for name in frame.columns:
            series = frame[name]
            if logical_type(series) == "string":
                kind = detect_pii_kind(str(name), sample_values(series))
                if kind in rule.kinds:
                    found[str(name)] = kind
    else:
        for name in rule.columns:
            series = require_column(frame, name, where, "columns")
            kind = detect_pii_kind(name, sample_values(series))
            found[name] = kind if kind in rule.kinds else None
    updates: dict[str, pd.Series] = {}
    changed = 0
    for name, kind in found.items():
        text = as_text(frame[name])
        # Masking ASCII values is vectorised, so it runs on the whole column: personal data is mostly
        # distinct, and factorising a million e-mails first cost more than masking them (0.4 s).
        fast = _mask_ascii(text_array(text), kind) if rule.policy == "mask" else None
        if fast is not None:
            updates[name] = pd.Series(pd.arrays.ArrowStringArray(fast), index=text.index, name=text.name)
            changed += len(text) - int(text.isna().sum())
            continue
        codes, distinct = pd.factorize(text)
        values = [str(value) for value in distinct]
        protected = protect_values(values, kind, policy=rule.policy, salt=salt)
        updates[name] = take_codes(pd.array(protected, dtype=TEXT_DTYPE), codes, text)
        changed += int((codes >= 0).sum())
    kinds: dict[str, str] = {name: kind or "unknown" for name, kind in found.items()}
    return with_columns(frame, updates), RuleReport(
        "mask_pii", tuple(found), changed=changed, detail=rule.policy, pii_kinds=kinds
    )


# Python's str.strip() removes these ASCII characters (str.isspace); Arrow's whitespace differs.
_ASCII_PY_SPACE: Final = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
_REVERSED_EMAIL: Final = r"(?s)^(?P<domain>[^@]+)@."  # reversed: domain, its '@', a non-empty local part
_MASK_SLICE: Final = 1 << 16


def _mask_ascii(values: pa.Array | pa.ChunkedArray, kind: PiiKind | None) -> pa.ChunkedArray | None:
    """:func:`ods.domain.pii.mask_value` of every value, vectorised, for ASCII e-mails, phones and bank
    cards (there, Arrow's byte-wise functions see exactly the characters Python does); None otherwise.
    Nulls stay null. Values are masked :data:`_MASK_SLICE` at a time, so the byte pass's temporaries
    (~20 bytes per byte of text) stay small whatever the column's length."""
    if kind not in ("email", "phone", "bank_card") or len(values) == 0:
        return None
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if not all(is_text(chunk) and pc.all(pc.string_is_ascii(chunk)).as_py() is not False for chunk in chunks):
        return None
    pieces = []
    for chunk in chunks:
        for start in range(0, len(chunk), _MASK_SLICE):
            piece = pc.cast(chunk.slice(start, _MASK_SLICE), pa.large_string())
            masked = _mask_ascii_values(piece, kind)
            if piece.null_count:
                masked = pc.if_else(pc.is_valid(piece), masked, pa.scalar(None, pa.large_string()))
            pieces.append(masked)
    return pa.chunked_array(pieces, type=pa.large_string())


def _mask_ascii_values(values: pa.Array, kind: PiiKind) -> pa.Array:
    text = pc.utf8_trim(values, characters=_ASCII_PY_SPACE)  # str.strip()
    generic = pa.scalar(GENERIC_MASK, pa.large_string())
    if kind == "email":
        # rpartition('@'): local part before the last '@'; both parts non-empty, else the generic mask.
        # Matched on the reversed text, where the domain comes first: that pattern needs no backtracking
        # (2x faster than matching the text itself).
        parts = pc.extract_regex(pc.ascii_reverse(text), pattern=_REVERSED_EMAIL)
        masked = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text, 0, 1),
            pc.ascii_reverse(parts.field("domain")),
            pa.scalar("***@", pa.large_string()),
        )
        return pc.if_else(pc.is_valid(parts), masked, generic)
    # every digit but the last 4 as '*'; 4 digits or fewer: the generic mask
    offsets, data = string_buffers(text)
    start = int(offsets[0])
    data = data[start : int(offsets[-1])]
    offsets = offsets - start
    digit = (data - np.uint8(0x30)) < 10
    # seen[i]: digits before byte i (seen[offsets[k]]: before value k)
    seen = np.concatenate(([0], np.cumsum(digit, dtype=np.int32 if len(data) < 2**31 else np.int64)))
    total = seen[offsets[1:]] - seen[offsets[:-1]]
    last_hidden = np.repeat(seen[offsets[1:]] - 4, np.diff(offsets))  # per byte: its value's 4th-last digit
    hidden = digit & (seen[1:] <= last_hidden)
    masked_bytes = np.where(hidden, np.uint8(ord("*")), data)
    masked = pa.LargeStringArray.from_buffers(
        len(text), pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(masked_bytes)
    )
    return pc.if_else(pa.array(total <= 4), generic, masked)
