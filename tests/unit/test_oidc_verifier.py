"""How the token verifier fetches an issuer's keys: cached, refetched for an unknown ``kid`` at most once per
``min_refetch_s``, refetched when stale. The issuer is an injected httpx transport and the clock an
injected function, so the count of fetches is exact (the real provider is in test_api_tokens.py)."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from ods.adapters.identity.oidc import OidcVerifier
from ods.domain.identity import TokenRefused

ISSUER = "https://sso.example.com/realms/ods"
AUDIENCE = "ods-api"


class Issuer:
    """Serves a discovery document and a mutable key set; counts the key-set requests."""

    def __init__(self, *keys: RSAKey | ECKey, issuer: str = ISSUER) -> None:
        self.keys = list(keys)
        self.issuer = issuer
        self.jwks_requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": self.issuer, "jwks_uri": f"{ISSUER}/certs"})
        self.jwks_requests += 1
        return httpx.Response(200, json={"keys": [key.as_dict(private=False) for key in self.keys]})


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _token(key: RSAKey | ECKey, alg: str = "RS256", kid: str | None = None, at: float | None = None) -> str:
    now = int(at or time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ann", "iat": now, "exp": now + 300}
    return jwt.encode({"alg": alg, "kid": kid or key.kid}, payload, key, algorithms=[alg])


def _verifier(issuer: Issuer, clock: Clock) -> OidcVerifier:
    return OidcVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        min_refetch_s=10,
        jwks_cache_s=3600,
        transport=httpx.MockTransport(issuer.handle),
        clock=clock,
    )


def test_an_unknown_kid_refetches_once_per_interval_whatever_arrives() -> None:
    old = RSAKey.generate_key(2048, parameters={"kid": "old"})
    new = RSAKey.generate_key(2048, parameters={"kid": "new"})
    issuer, clock = Issuer(old), Clock()
    verifier = _verifier(issuer, clock)

    assert verifier.verify(_token(old))["sub"] == "ann"
    issuer.keys = [new, old]  # rotation
    clock.now += 11
    assert verifier.verify(_token(new))["sub"] == "ann"  # one refetch
    assert issuer.jwks_requests == 2

    forger = RSAKey.generate_key(2048)
    for attempt in range(50):  # a flood of made-up kids within the interval fetches nothing
        with pytest.raises(TokenRefused, match=r"names no key of the issuer's key set \(kid\)"):
            verifier.verify(_token(forger, kid=f"made-up-{attempt}"))
        clock.now += 0.1
    assert issuer.jwks_requests == 2
    clock.now += 10
    with pytest.raises(TokenRefused, match="names no key"):
        verifier.verify(_token(forger, kid="made-up-late"))
    assert issuer.jwks_requests == 3  # once the interval passed, one more fetch

    clock.now += 3600
    verifier.verify(_token(old, at=clock.now))
    assert issuer.jwks_requests == 4  # a stale set is fetched again


def test_es256_is_accepted_and_hmac_is_refused_before_any_key() -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec"})
    issuer = Issuer(ec)
    verifier = _verifier(issuer, Clock())
    assert verifier.verify(_token(ec, alg="ES256"))["aud"] == AUDIENCE
    with pytest.raises(TokenRefused, match="tokens must be signed with RS256, ES256, PS256"):
        verifier.verify("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")  # {"alg":"HS256"}.{}.sig


def test_a_discovery_document_of_another_issuer_is_refused() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k"})
    verifier = _verifier(Issuer(key, issuer="https://evil.example.com"), Clock())
    with pytest.raises(TokenRefused, match="the issuer's keys could not be fetched"):
        verifier.verify(_token(key))


def test_a_provider_that_is_down_is_tried_once_per_interval_and_its_cached_keys_keep_serving() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k"})
    issuer, clock = Issuer(key), Clock()
    up = True

    def handle(request: httpx.Request) -> httpx.Response:
        if not up:
            raise httpx.ConnectError("connection refused", request=request)
        return issuer.handle(request)

    verifier = OidcVerifier(
        issuer=ISSUER, audience=AUDIENCE, min_refetch_s=10, transport=httpx.MockTransport(handle), clock=clock
    )
    up = False
    with pytest.raises(TokenRefused, match=r"keys could not be fetched \(ConnectError\)"):
        verifier.verify(_token(key))
    with pytest.raises(TokenRefused, match=r"keys could not be fetched \(last tried 0 s ago\)"):
        verifier.verify(_token(key))  # within the interval: not tried again

    up = True
    clock.now += 10
    verifier.verify(_token(key, at=clock.now))
    up = False
    clock.now += 3600  # the set is stale and the provider is down: the cached set still verifies
    assert verifier.verify(_token(key, at=clock.now))["sub"] == "ann"
    assert issuer.jwks_requests == 1
