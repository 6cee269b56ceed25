"""Personal data: detect e-mail addresses, phone numbers, Chinese ID cards and bank cards; mask or hash them.

Detection looks at the column name and at a sample of values. Masking keeps a hint a person can use to
recognise a record (``j***@example.com``, the last four digits); hashing is salted and deterministic, so
hashed columns still join.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from ods.domain.dataset_spec import PII_KINDS, PiiKind

CONTENT_MATCH_SHARE: Final = 0.8
NAME_MATCH_SHARE: Final = 0.5
MAX_SAMPLE: Final = 1000
HASH_LENGTH: Final = 16
GENERIC_MASK: Final = "***"

_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
_PHONE_CHARS = re.compile(r"\+?[\d\s().\-]{7,25}")
_PHONE_SEPARATORS = re.compile(r"[\s().\-]")
_E164 = re.compile(r"(?:\+|00)[1-9]\d{7,14}")
_CN_MOBILE = re.compile(r"(?:(?:\+|00)?86)?1[3-9]\d{9}")
_CN_ID_CARD = re.compile(r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dX]")
_CARD_CHARS = re.compile(r"\d[\d \-]{10,22}\d")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CODES: Final = "10X98765432"

# Column-name keywords per kind, checked in this order; ASCII ones must match whole '_'-separated words.
_NAME_KEYWORDS: Final[tuple[tuple[PiiKind, tuple[str, ...]], ...]] = (
    (
        "id_card",
        ("id_card", "idcard", "id_number", "id_no", "idno", "identity_card", "national_id", "身份证"),
    ),
    (
        "bank_card",
        (
            "bank_card", "bankcard", "card_no", "card_number", "cardno", "credit_card",
            "debit_card", "银行卡", "卡号",
        ),
    ),
    ("email", ("email", "e_mail", "mail", "email_address", "邮箱", "电子邮件", "邮件")),
    (
        "phone",
        (
            "phone", "mobile", "tel", "telephone", "cellphone", "phone_number", "msisdn",
            "手机", "电话", "联系电话",
        ),
    ),
)  # fmt: skip


def is_email(value: str) -> bool:
    """``name@domain.tld`` (Unicode letters allowed)."""
    return _EMAIL.fullmatch(value.strip()) is not None


def phone_digits(value: str) -> str | None:
    """The number without separators (``+8613812345678``) if ``value`` is a phone number, else None.

    Accepted: international numbers with ``+`` or ``00`` (E.164: up to 15 digits) and Chinese mobile
    numbers (``1[3-9]`` + 9 digits, optionally prefixed 86), with spaces, dots, dashes or brackets.
    """
    text = value.strip()
    if not _PHONE_CHARS.fullmatch(text):
        return None
    compact = _PHONE_SEPARATORS.sub("", text)
    if _E164.fullmatch(compact) or _CN_MOBILE.fullmatch(compact):
        return compact
    return None


def is_phone(value: str) -> bool:
    """See :func:`phone_digits`."""
    return phone_digits(value) is not None


def cn_id_checksum_valid(value: str) -> bool:
    """The ISO 7064 MOD 11-2 check character (last of 18) of a Chinese resident ID number is right."""
    text = value.strip().upper()
    if len(text) != 18 or not text[:17].isascii() or not text[:17].isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CODES[total % 11] == text[17]


def is_cn_id_card(value: str) -> bool:
    """An 18-character Chinese resident ID: region, plausible birth date, sequence and a valid check."""
    text = value.strip().upper()
    return _CN_ID_CARD.fullmatch(text) is not None and cn_id_checksum_valid(text)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a digit string holds."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def is_bank_card(value: str) -> bool:
    """12-19 digits (spaces or dashes between groups allowed) passing the Luhn check."""
    text = value.strip()
    if not _CARD_CHARS.fullmatch(text):
        return False
    digits = re.sub(r"[ \-]", "", text)
    return 12 <= len(digits) <= 19 and luhn_valid(digits)


_STRICT_CHECKS: Final[tuple[tuple[PiiKind, Callable[[str], bool]], ...]] = (
    ("id_card", is_cn_id_card),
    ("bank_card", is_bank_card),
    ("email", is_email),
    ("phone", is_phone),
)


def _looks_like(kind: PiiKind, value: str) -> bool:
    """A loose check, used when the column name already says the kind (local phone formats, old IDs)."""
    digits = sum(char.isdigit() for char in value)
    if kind == "email":
        return "@" in value
    if kind == "phone":
        return digits >= 6
    if kind == "id_card":
        return len(value.strip()) in (15, 18) and digits >= 14
    return 12 <= digits <= 19


def kind_from_column_name(column_name: str) -> PiiKind | None:
    """The PII kind a column name announces (``customer_email`` -> email, ``身份证号`` -> id_card)."""
    name = unicodedata.normalize("NFKC", column_name).casefold()
    words = "_" + re.sub(r"[^\w]+|_+", "_", name).strip("_") + "_"
    for kind, keywords in _NAME_KEYWORDS:
        for keyword in keywords:
            found = f"_{keyword}_" in words if keyword.isascii() else keyword in name
            if found:
                return kind
    return None


def _sample(values: Iterable[object]) -> list[str]:
    texts = [
        str(value).strip()
        for value in values
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    ]
    texts = [text for text in texts if text]
    if len(texts) <= MAX_SAMPLE:
        return texts
    step = len(texts) / MAX_SAMPLE
    return [texts[int(index * step)] for index in range(MAX_SAMPLE)]


def detect_pii_kind(column_name: str, sample_values: Iterable[object]) -> PiiKind | None:
    """The kind of personal data a column holds, or None.

    By content: at least 80% of up to 1,000 non-null sampled values pass a kind's strict check (ID cards
    and bank cards need their checksums). By name: the column name announces a kind and at least half of
    the sample loosely fits it (or there is no sample), so ``email_verified: true`` is not an e-mail column.
    """
    sample = _sample(sample_values)
    if sample:
        for kind, check in _STRICT_CHECKS:
            if sum(map(check, sample)) >= CONTENT_MATCH_SHARE * len(sample):
                return kind
    named = kind_from_column_name(column_name)
    if named is None:
        return None
    if not sample or sum(_looks_like(named, value) for value in sample) >= NAME_MATCH_SHARE * len(sample):
        return named
    return None


def _mask_digits(value: str, keep_last: int) -> str:
    total = sum(char.isdigit() for char in value)
    if total <= keep_last:
        return GENERIC_MASK
    seen = 0
    masked = []
    for char in value:
        if char.isdigit():
            seen += 1
            masked.append(char if seen > total - keep_last else "*")
        else:
            masked.append(char)
    return "".join(masked)


def mask_value(value: str, kind: PiiKind | None) -> str:
    """Hide ``value`` but keep a hint: e-mail ``j***@example.com``; phone and bank card: the last 4
    digits; ID card: the first 6 and last 4 characters. Unknown kinds and too-short values: ``***``."""
    text = value.strip()
    if kind == "email":
        local, at, domain = text.rpartition("@")
        return f"{local[0]}***@{domain}" if at and local and domain else GENERIC_MASK
    if kind in ("phone", "bank_card"):
        return _mask_digits(text, keep_last=4)
    if kind == "id_card":
        return text[:6] + "*" * (len(text) - 10) + text[-4:] if len(text) >= 12 else GENERIC_MASK
    return GENERIC_MASK


def hash_value(value: str, salt: str) -> str:
    """``sha256(salt + value)`` as hex, truncated to 16 characters: deterministic, so joins still work."""
    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()[:HASH_LENGTH]


def protect_values(values: Sequence[str], kind: PiiKind | None, *, policy: str, salt: str = "") -> list[str]:
    """Mask (``policy='mask'``) or hash (``policy='hash'``) each value."""
    if policy == "hash":
        return [hash_value(value, salt) for value in values]
    return [mask_value(value, kind) for value in values]


__all__ = [
    "PII_KINDS",
    "PiiKind",
    "cn_id_checksum_valid",
    "detect_pii_kind",
    "hash_value",
    "is_bank_card",
    "is_cn_id_card",
    "is_email",
    "is_phone",
    "kind_from_column_name",
    "luhn_valid",
    "mask_value",
    "phone_digits",
    "protect_values",
]
