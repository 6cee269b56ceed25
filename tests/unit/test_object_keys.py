"""Which object keys are accepted, and that a rejected key is named in the error."""

from __future__ import annotations

import pytest

from ods.domain.object_keys import (
    MAX_KEY_BYTES,
    document_name_problem,
    join_key,
    printable_name,
    printable_text,
    validate_object_key,
)
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


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("docs/été 2024.txt", "docs/été 2024.txt"),
        ("docs/ctrl\x01char.txt", "docs/ctrl\\x01char.txt"),
        ("new\nline\ttab\rcr", "new\\nline\\ttab\\rcr"),
        ("esc\x1b[31mred\x7f", "esc\\x1b[31mred\\x7f"),
        ("c1\x85", "c1\\u0085"),  # a C1 control: not to be confused with the byte 0x85 below
        (b"bad\x85utf8".decode("utf-8", "surrogateescape"), "bad\\x85utf8"),
        ("bidi\u202eoverride", "bidi\\u202eoverride"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_printable_names_escape_what_a_terminal_would_act_on(name: str, shown: str) -> None:
    assert printable_name(name) == shown
    assert printable_name(name).isprintable()


def test_distinct_names_stay_distinct_when_printable() -> None:
    names = ["a\x01", "a\\x01", "a\x85", b"a\x85".decode("utf-8", "surrogateescape"), "a\\u0085"]
    assert len({printable_name(name) for name in names}) == len(names)


def test_printable_text_keeps_backslashes_of_names_already_escaped() -> None:
    assert printable_text('name "ctrl\\x01" and a raw \x1b') == 'name "ctrl\\x01" and a raw \\x1b'


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("docs/ctrl\x01char.txt", 'name "docs/ctrl\\x01char.txt" has control character \\x01 (U+0001) at character 10'),
        ("a\nb.txt", "has control character \\n (U+000A) at character 2"),
        ("a\x7f", "has control character \\x7f (U+007F) at character 2"),
        ("x\x9b", "has control character \\u009b (U+009B) at character 2"),
        ("line\u2028sep", "has line separator \\u2028 (U+2028) at character 5"),
        (b"bad\xffutf8.txt".decode("utf-8", "surrogateescape"), 'is not valid UTF-8: byte \\xff at character 4'),
        ("x" * (MAX_KEY_BYTES + 1), f"is {MAX_KEY_BYTES + 1:,} bytes long, over the limit of 1,024 bytes"),
    ],
)  # fmt: skip
def test_unusable_document_names_are_explained_with_character_and_position(name: str, problem: str) -> None:
    found = document_name_problem(name)
    assert found is not None and problem in found
    assert found.isprintable()


@pytest.mark.parametrize(
    "name", ["docs/été 2024.txt", "a b/c+d=e&f.txt", "back\\slash.txt", "x" * MAX_KEY_BYTES]
)
def test_usable_document_names_have_no_problem(name: str) -> None:
    assert document_name_problem(name) is None
