"""API keys' pure rules: the key's shape, its digest and prefix, lifetimes, and a stored key's state."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from ods.domain.api_keys import (
    DISPLAY_CHARS,
    InvalidExpiryError,
    digest_api_key,
    digests_match,
    display_prefix,
    is_api_key_shaped,
    key_state,
    new_api_key,
    parse_expiry,
)
from ods.domain.names import InvalidNameError, check_name

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_new_key_is_random_prefixed_and_stored_only_as_its_sha256() -> None:
    first, second = new_api_key(), new_api_key()

    assert first.secret != second.secret and first.digest != second.digest
    assert first.secret.startswith("ods_") and len(first.secret) == 47 and is_api_key_shaped(first.secret)
    assert first.digest == hashlib.sha256(first.secret.encode()).hexdigest() == digest_api_key(first.secret)
    assert first.prefix == first.secret[:DISPLAY_CHARS] == display_prefix(first.secret)
    assert first.secret not in repr(first.prefix) and len(first.prefix) == 12


def test_digests_are_compared_whole() -> None:
    made = new_api_key()
    assert digests_match(made.secret, made.digest)
    assert not digests_match(made.secret[:-1] + ("A" if made.secret[-1] != "A" else "B"), made.digest)
    assert not digests_match(made.secret, made.digest[:-1])


@pytest.mark.parametrize(
    "text", ["", "ods_", "sk-" + "a" * 44, "ods_" + "a" * 42, "ods_" + "a" * 44, "ods_" + "a" * 42 + "!"]
)
def test_text_not_shaped_like_a_key_is_recognised_before_any_lookup(text: str) -> None:
    assert not is_api_key_shaped(text)


@pytest.mark.parametrize(
    ("text", "lifetime"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        (" 7D ", timedelta(days=7)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_lifetimes_in_minutes_hours_or_days(text: str, lifetime: timedelta) -> None:
    assert parse_expiry(text) == lifetime


@pytest.mark.parametrize(
    "text", ["", "30", "d", "0d", "-1d", "1.5h", "30 days", "2w", "3651d", "1d2h", "x" * 100]
)
def test_a_bad_lifetime_names_the_value_and_the_rule(text: str) -> None:
    with pytest.raises(InvalidExpiryError) as raised:
        parse_expiry(text)
    message = str(raised.value)
    assert "90m, 12h or 30d" in message
    assert repr(text[:37]) in message
    assert "\n" not in message


def test_a_stored_key_is_active_until_revoked_or_expired() -> None:
    later = NOW + timedelta(days=1)
    assert key_state(revoked_at=None, expires_at=None, now=NOW) == "active"
    assert key_state(revoked_at=None, expires_at=later, now=NOW) == "active"
    assert key_state(revoked_at=None, expires_at=NOW, now=NOW) == "expired"
    assert key_state(revoked_at=NOW, expires_at=later, now=NOW) == "revoked"


def test_key_names_follow_the_naming_rule() -> None:
    assert check_name("API key", "ci-pipeline") == "ci-pipeline"
    with pytest.raises(InvalidNameError, match=r"API key name 'CI' is not allowed.*'ci' would do"):
        check_name("API key", "CI")
