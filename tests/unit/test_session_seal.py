"""The console session's secrets (``ods.adapters.identity.session_seal``) and the login's return path
(``ods.api.sessions.safe_next_path``): pure logic, no provider."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ods.adapters.identity.login import new_pkce_pair
from ods.adapters.identity.session_seal import (
    SealBroken,
    csrf_matches,
    csrf_token,
    is_secret_shaped,
    new_session_secret,
    seal,
    session_id,
    unseal,
)
from ods.api.sessions import safe_next_path


def test_a_sealed_session_opens_only_with_its_cookie() -> None:
    secret, other = new_session_secret(), new_session_secret()
    sealed = seal(secret, {"access_token": "eyJ.token", "expires_at": 1.5})

    assert unseal(secret, sealed) == {"access_token": "eyJ.token", "expires_at": 1.5}
    assert "eyJ.token" not in sealed and secret not in sealed
    with pytest.raises(SealBroken):
        unseal(other, sealed)
    header, key, iv, ciphertext, tag = sealed.split(".")
    flipped = ciphertext[:-2] + ("A" if ciphertext[-2] != "A" else "B") + ciphertext[-1]
    with pytest.raises(SealBroken):
        unseal(secret, ".".join((header, key, iv, flipped, tag)))


def test_ids_and_csrf_tokens_derive_from_the_cookie_without_revealing_it() -> None:
    secret = new_session_secret()
    assert len(secret) >= 43 and is_secret_shaped(secret) and secret != new_session_secret()
    assert session_id(secret) == session_id(secret) and len(session_id(secret)) == 64
    assert secret not in (session_id(secret), csrf_token(secret))
    assert csrf_matches(secret, csrf_token(secret))
    assert not csrf_matches(secret, None) and not csrf_matches(secret, "")
    assert not csrf_matches(secret, csrf_token(new_session_secret()))
    assert not is_secret_shaped("a b") and not is_secret_shaped("x" * 200) and not is_secret_shaped("")


def test_pkce_pairs_follow_rfc_7636() -> None:
    pair = new_pkce_pair()
    assert 43 <= len(pair.verifier) <= 128 and len(pair.challenge) == 43 and "=" not in pair.challenge
    assert new_pkce_pair().verifier != pair.verifier
    expected = base64.urlsafe_b64encode(hashlib.sha256(pair.verifier.encode()).digest()).rstrip(b"=").decode()
    assert pair.challenge == expected


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/console/datasets?q=x", "/console/datasets?q=x"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=y", "/"),
        ("console", "/"),
    ],
)
def test_a_login_returns_only_to_a_path_of_this_server(asked: str | None, kept: str) -> None:
    assert safe_next_path(asked) == kept
