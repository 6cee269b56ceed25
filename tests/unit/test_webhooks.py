"""Webhook rules: the signature a receiver checks, the retry schedule (on an injected clock), and which
targets a webhook may have on each profile."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ods.api.webhooks import check_target
from ods.domain.webhooks import (
    WebhookUrlRefused,
    check_webhook_url,
    event_body,
    next_attempt_at,
    private_addresses,
    retry_delay_s,
    secret_hint,
    sign_body,
    signature_matches,
)
from ods.settings import WebhookSettings

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SECRET = "s3cret-s3cret-s3cret"


def test_the_signature_is_the_hmac_of_the_body_and_checks_in_constant_time() -> None:
    body = event_body("dataset.created", T0, {"dataset": "sales", "version": 1})
    assert json.loads(body) == {
        "event_type": "dataset.created",
        "timestamp": "2026-12-06T12:00:00.000Z",
        "data": {"dataset": "sales", "version": 1},
    }
    signature = sign_body(SECRET, body)
    # The value a receiver computes with nothing but the standard library:
    import hashlib
    import hmac

    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature_matches(SECRET, body, signature)
    assert signature_matches(SECRET, body, f" {signature} ")
    assert not signature_matches("another-secret-xxxx", body, signature)
    assert not signature_matches(SECRET, body + b" ", signature)
    assert not signature_matches(SECRET, body, None)
    assert (
        event_body("dataset.created", T0, {"version": 1, "dataset": "sales"}) == body
    )  # retries: same bytes


def test_secret_hint_shows_four_characters_and_the_length() -> None:
    assert secret_hint(SECRET) == "s3cr… (20 characters)"


def test_retries_double_from_the_base_up_to_the_cap() -> None:
    assert [retry_delay_s(n, base_s=10, max_s=60) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert retry_delay_s(10_000, base_s=10, max_s=3600) == 3600
    with pytest.raises(ValueError, match="attempts counts failed attempts from 1"):
        retry_delay_s(0, base_s=10, max_s=60)


def test_a_delivery_expires_when_its_next_try_would_fall_after_the_expiry() -> None:
    schedule = {"first_created": T0, "base_s": 10.0, "max_s": 3600.0, "expire_s": 60.0}
    assert next_attempt_at(attempts=1, now=T0, **schedule) == T0 + timedelta(seconds=10)
    assert next_attempt_at(attempts=3, now=T0 + timedelta(seconds=20), **schedule) == T0 + timedelta(
        seconds=60
    )
    assert next_attempt_at(attempts=4, now=T0 + timedelta(seconds=60), **schedule) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "must use http or https, not 'ftp'"),
        ("example.com/hook", "must use http or https"),
        ("https:///hook", "names no host"),
        ("https://user:pw@example.com/hook", "carries credentials"),
        ("http://example.com:99999/hook", "is not a URL"),
    ],
)
def test_urls_that_are_not_plain_http_targets_are_refused(url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlRefused, match=reason):
        check_webhook_url(url)


def test_internal_addresses_are_found_unless_allowed() -> None:
    addresses = [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "::1",
        "::ffff:192.168.1.1",
        "100.64.0.1",
        "8.8.8.8",
    ]
    assert private_addresses(addresses) == [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "::1",
        "192.168.1.1",
        "100.64.0.1",
    ]
    assert private_addresses(addresses, ["10.0.0.0/8", "127.0.0.1"]) == [
        "169.254.169.254",
        "::1",
        "192.168.1.1",
        "100.64.0.1",
    ]


def test_the_cluster_profile_refuses_internal_targets_the_local_profile_allows() -> None:
    settings = WebhookSettings()
    resolver = {"hooks.example.com": ["93.184.216.34"], "metadata.internal": ["169.254.169.254"]}.__getitem__

    check_target("http://127.0.0.1:9000/hook", settings, "local", resolver)
    check_target("https://hooks.example.com/x", settings, "cluster", resolver)
    with pytest.raises(
        WebhookUrlRefused, match=r"resolves to internal address 169\.254\.169\.254.*ALLOWED_TARGETS"
    ):
        check_target("http://metadata.internal/latest", settings, "cluster", resolver)
    allowed = WebhookSettings(allowed_targets=["169.254.0.0/16"])
    check_target("http://metadata.internal/latest", allowed, "cluster", resolver)

    def unresolvable(host: str) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(WebhookUrlRefused, match="does not resolve"):
        check_target("https://nowhere.invalid/x", settings, "cluster", unresolvable)


def test_allowed_targets_must_be_networks() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"'hooks\.example\.com' is not a network or address"):
        WebhookSettings(allowed_targets=["hooks.example.com"])
