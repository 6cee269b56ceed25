"""Which object keys are accepted, and that a rejected key is named in the error."""

from __future__ import annotations

import pytest

from ods.domain.object_keys import MAX_KEY_BYTES, join_key, validate_object_key
from ods.errors import InvalidObjectKeyError

ACCEPTED_KEYS = [
    "a",
    "raw/sales.csv",
    "datasets/sales/v=3/part-0.parquet",
    "données/été 2024.csv",
    ".hidden",
    "a/.b",
    "...",
    "a b/c+d=e&f.txt",
    "x" * MAX_KEY_BYTES,
]

REJECTED_KEYS = [
    pytest.param("../x", "'..' segment", id="parent-first"),
    pytest.param("a/../../b", "'..' segment", id="parent-inside"),
    pytest.param("a/..", "'..' segment", id="parent-last"),
    pytest.param("./a", "'.' segment", id="dot-segment"),
    pytest.param("/etc/passwd", "absolute path", id="absolute"),
    pytest.param("a\x00b", "control character", id="nul"),
    pytest.param("a\nb", "control character", id="newline"),
    pytest.param("a\x7fb", "control character", id="delete"),
    pytest.param("C:\\x", "backslash", id="drive-backslash"),
    pytest.param("C:x", "drive path", id="drive-relative"),
    pytest.param("c:/x", "drive path", id="drive-slash"),
    pytest.param("a\\b", "backslash", id="backslash"),
    pytest.param("..\\x", "backslash", id="backslash-parent"),
    pytest.param("a//b", "empty segment", id="double-slash"),
    pytest.param("a/", "empty segment", id="trailing-slash"),
    pytest.param("\ud800", "control character", id="lone-surrogate"),
]


@pytest.mark.parametrize("key", ACCEPTED_KEYS)
def test_safe_keys_are_returned_unchanged(key: str) -> None:
    assert validate_object_key(key) == key


@pytest.mark.parametrize(("key", "reason"), REJECTED_KEYS)
def test_unsafe_keys_are_rejected_naming_the_key(key: str, reason: str) -> None:
    with pytest.raises(InvalidObjectKeyError) as caught:
        validate_object_key(key)
    assert repr(key) in str(caught.value)
    assert reason in str(caught.value)


REJECTED_PREFIXES = [
    *(param for param in REJECTED_KEYS if param.id != "trailing-slash"),
    pytest.param("a//", "empty segment", id="double-trailing-slash"),
    pytest.param("/", "absolute path", id="root"),
]


@pytest.mark.parametrize(("key", "reason"), REJECTED_PREFIXES)
def test_unsafe_prefixes_are_rejected_naming_them(key: str, reason: str) -> None:
    with pytest.raises(InvalidObjectKeyError) as caught:
        validate_object_key(key, allow_prefix=True)
    assert repr(key) in str(caught.value)
    assert reason in str(caught.value)


def test_empty_key_is_rejected_with_a_hint() -> None:
    with pytest.raises(InvalidObjectKeyError, match=r"empty.*'raw/sales\.csv'"):
        validate_object_key("")


def test_key_longer_than_the_limit_is_rejected_showing_its_start() -> None:
    key = "k" * (MAX_KEY_BYTES + 1)
    with pytest.raises(InvalidObjectKeyError) as caught:
        validate_object_key(key)
    assert repr(key[:40]) in str(caught.value)
    assert str(MAX_KEY_BYTES) in str(caught.value)


def test_the_byte_limit_counts_utf8_bytes_not_characters() -> None:
    key = "é" * (MAX_KEY_BYTES // 2 + 1)
    with pytest.raises(InvalidObjectKeyError, match="longer than"):
        validate_object_key(key)


@pytest.mark.parametrize("prefix", ["", "raw/", "raw", "raw/sa", "a/b/"])
def test_prefix_mode_accepts_empty_and_trailing_slash(prefix: str) -> None:
    assert validate_object_key(prefix, allow_prefix=True) == prefix


def test_non_string_key_is_rejected() -> None:
    with pytest.raises(InvalidObjectKeyError, match="must be a string, got int"):
        validate_object_key(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("raw", "sales.csv"), "raw/sales.csv"),
        (("raw/", "/sales.csv"), "raw/sales.csv"),
        (("", "raw", "", "sales.csv"), "raw/sales.csv"),
        (("datasets/sales", "v=3", "part-0.parquet"), "datasets/sales/v=3/part-0.parquet"),
        (("/raw", "x"), "raw/x"),
    ],
)
def test_join_key_joins_with_single_slashes(parts: tuple[str, ...], expected: str) -> None:
    assert join_key(*parts) == expected


@pytest.mark.parametrize(
    ("parts", "named"),
    [
        (("raw", ".."), "raw/.."),
        (("raw", "a/../../b"), "raw/a/../../b"),
        (("raw", "a\x00b"), "raw/a\x00b"),
        (("raw", "a\\b"), "raw/a\\b"),
        (("raw", "a//b"), "raw/a//b"),
        (("C:", "x"), "C:/x"),
    ],
)
def test_join_key_rejects_unsafe_results_naming_them(parts: tuple[str, ...], named: str) -> None:
    with pytest.raises(InvalidObjectKeyError) as caught:
        join_key(*parts)
    assert repr(named) in str(caught.value)


def test_join_key_of_nothing_is_rejected_as_empty() -> None:
    with pytest.raises(InvalidObjectKeyError, match="empty"):
        join_key("", "/")
