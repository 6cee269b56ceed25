"""Detection, masking and hashing of personal data."""

from __future__ import annotations

import hashlib

import pytest

from ods.domain.pii import (
    cn_id_checksum_valid,
    detect_pii_kind,
    hash_value,
    is_bank_card,
    is_cn_id_card,
    is_email,
    is_phone,
    kind_from_column_name,
    luhn_valid,
    mask_value,
    phone_digits,
)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id_card(first17: str) -> str:
    """An ID number with its MOD 11-2 check character computed independently of the code under test."""
    remainder = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11
    return first17 + "10X98765432"[remainder]


def luhn_complete(partial: str) -> str:
    for check in "0123456789":
        digits = partial + check
        total = 0
        for i, c in enumerate(reversed(digits)):
            d = int(c) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


VALID_IDS = [
    "11010519491231002X",  # the published sample number, check character X
    make_id_card("44030419900307123"),
    make_id_card("31010119850615432"),
]


@pytest.mark.parametrize("number", VALID_IDS)
def test_valid_id_cards_pass_their_checksum(number: str) -> None:
    assert cn_id_checksum_valid(number)
    assert is_cn_id_card(number)
    assert is_cn_id_card(number.lower())  # a lowercase 'x' check character is still valid


@pytest.mark.parametrize(
    "number",
    [
        "110105194912310021",  # wrong check digit (X expected)
        "11010519491231002",  # 17 characters
        "11010519491231002X1",  # 19 characters
        "11010519491331002X",  # month 13, checksum aside
        "A1010519491231002X",
    ],
)
def test_invalid_id_cards_are_rejected(number: str) -> None:
    assert not is_cn_id_card(number)


def test_every_wrong_check_character_fails() -> None:
    good = VALID_IDS[1]
    for wrong in "0123456789X":
        if wrong != good[-1]:
            assert not cn_id_checksum_valid(good[:17] + wrong)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111-1111")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4111111111111111", True),
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1111", True),
        (luhn_complete("62220212345678901"), True),  # 18 digits
        ("4111111111111112", False),  # Luhn fails
        ("41111111110", False),  # 11 digits: too short even if it passed
        ("4111111111111111111111", False),  # 22 digits
        ("card 4111111111111111", False),
    ],
)
def test_bank_cards(value: str, expected: bool) -> None:
    assert is_bank_card(value) is expected


@pytest.mark.parametrize(
    ("value", "digits"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("0044 20 7946 0958", "00442079460958"),
        ("13812345678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("12812345678", None),  # CN mobiles start 13-19
        ("555-2671", None),  # local number without country code
        ("+0 123 456 789", None),  # country codes do not start with 0
        ("tel: 13812345678", None),
    ],
)
def test_phone_numbers(value: str, digits: str | None) -> None:
    assert phone_digits(value) == digits
    assert is_phone(value) is (digits is not None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane.doe+news@example.co.uk", True),
        ("张三@例子.中国", True),
        ("jane@localhost", False),
        ("jane.example.com", False),
        ("a@b@c.com", False),
    ],
)
def test_emails(value: str, expected: bool) -> None:
    assert is_email(value) is expected


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("email", "email"),
        ("Customer E-mail", "email"),
        ("mobile", "phone"),
        ("tel", "phone"),
        ("phone_number", "phone"),
        ("id_card", "id_card"),
        ("IDCard", "id_card"),
        ("id_number", "id_card"),
        ("身份证号", "id_card"),
        ("bank_card", "bank_card"),
        ("card_no", "bank_card"),
        ("银行卡号", "bank_card"),
        ("hotel_name", None),  # 'tel' inside a word does not count
        ("title", None),
    ],
)
def test_kind_from_column_name(name: str, kind: str | None) -> None:
    assert kind_from_column_name(name) == kind


def test_content_detection_needs_eighty_percent() -> None:
    emails = [f"user{i}@example.com" for i in range(8)]

    assert detect_pii_kind("contact", [*emails, "n/a", "unknown"]) == "email"  # 8 of 10
    assert detect_pii_kind("contact", [*emails[:7], "n/a", "unknown", "-"]) is None  # 7 of 10


def test_content_detection_of_each_kind_ignores_nulls() -> None:
    assert detect_pii_kind("a", ["13812345678", None, "+44 20 7946 0958"]) == "phone"
    assert detect_pii_kind("b", [*VALID_IDS, None]) == "id_card"
    assert detect_pii_kind("c", ["4111111111111111", "5500 0000 0000 0004"]) == "bank_card"
    assert detect_pii_kind("d", [4111111111111111]) == "bank_card"  # numbers from typed sources
    assert detect_pii_kind("e", ["London", "Paris"]) is None


def test_name_detection_needs_values_that_loosely_fit() -> None:
    assert detect_pii_kind("phone", ["020 7946 0958", "0161 496 0000"]) == "phone"  # local formats
    assert detect_pii_kind("email", []) == "email"  # nothing to contradict the name
    assert detect_pii_kind("email_verified", ["true", "false"]) is None


def test_sample_is_capped_at_a_thousand_values() -> None:
    values = ["x"] * 5000 + [f"u{i}@example.com" for i in range(20_000)]

    assert detect_pii_kind("col", values) == "email"  # an even spread, not the first 1,000


@pytest.mark.parametrize(
    ("value", "kind", "masked"),
    [
        ("john.smith@example.com", "email", "j***@example.com"),
        ("+44 20 7946 0958", "phone", "+** ** **** 0958"),
        ("13812345678", "phone", "*******5678"),
        ("11010519491231002X", "id_card", "110105********002X"),
        ("4111 1111 1111 1111", "bank_card", "**** **** **** 1111"),
        ("123", "phone", "***"),
        ("not-an-email", "email", "***"),
        ("anything", None, "***"),
    ],
)
def test_masking_keeps_a_hint(value: str, kind: str | None, masked: str) -> None:
    assert mask_value(value, kind) == masked  # type: ignore[arg-type]


def test_hashing_is_salted_deterministic_and_truncated() -> None:
    value = "john.smith@example.com"

    hashed = hash_value(value, "pepper")

    assert hashed == hashlib.sha256(b"pepper" + value.encode()).hexdigest()[:16]
    assert hash_value(value, "pepper") == hashed
    assert hash_value(value, "salt") != hashed
    assert len(hashed) == 16
