"""An OpenID provider's access tokens, checked: its discovery document and key set (JWKS) fetched, cached
and refreshed by ``kid``; each token's signature, algorithm and claims verified with joserfc.

- Only RS256, ES256 and PS256 are accepted: ``none`` and the HMAC algorithms are refused before any key
  is looked at (an HS256 token "signed" with a public key is the classic forgery).
- The key set is cached for ``jwks_cache_s``; a token whose ``kid`` the cached set lacks refetches it
  once, and at most once per ``min_refetch_s`` whatever the tokens say, so a flood of made-up kids never
  becomes a flood of requests to the provider.
- ``iss`` must equal the issuer, ``aud`` must hold the audience, ``exp`` must be there; ``exp``, ``nbf``
  and ``iat`` are checked with ``leeway_s`` of clock skew.

Every refusal is a :class:`TokenRefused` whose one-line reason names the failed check, never the token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from ods.domain.identity import TokenRefused

ALLOWED_ALGORITHMS: Final = ("RS256", "ES256", "PS256")
MAX_TOKEN_BYTES: Final = 16 * 1024
_CLAIM_REASONS: Final = {
    "iss": "token was issued by another issuer (iss)",
    "aud": "token is meant for another audience (aud)",
    "nbf": "token is not valid yet (nbf)",
    "iat": "token was issued in the future (iat)",
    "exp": "token's expiry (exp) is not a valid time",
}


class OidcVerifier:
    """Verifies the access tokens of one issuer for one audience. Safe to share between threads: the key
    set is swapped under a lock, tokens are checked against whichever set is current."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
        jwks_cache_s: float = 3600.0,
        min_refetch_s: float = 10.0,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.jwks_cache_s = jwks_cache_s
        self.min_refetch_s = min_refetch_s
        self.timeout_s = timeout_s
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._jwks_uri: str | None = None
        self.fetches = 0
        """How many times the key set was fetched (for tests and the rate limit's proof)."""

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` once every check passed; TokenRefused saying which failed."""
        raw = token.encode("ascii", "replace")
        if len(raw) > MAX_TOKEN_BYTES:
            raise TokenRefused(f"token longer than {MAX_TOKEN_BYTES} bytes")
        header = _header_of(raw)
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            named = algorithm if algorithm in ("none", "HS256", "HS384", "HS512") else "this"
            raise TokenRefused(
                f"token algorithm {named!r} is not accepted; tokens must be signed with "
                f"{', '.join(ALLOWED_ALGORITHMS)}"
            )
        kid = header.get("kid")
        keys = self._keys_for(kid if isinstance(kid, str) else None)
        try:
            decoded = jwt.decode(raw, keys, algorithms=list(ALLOWED_ALGORITHMS))
        except InvalidKeyIdError:
            raise TokenRefused("token names no key of the issuer's key set (kid)") from None
        except BadSignatureError:
            raise TokenRefused("token signature does not verify against the issuer's keys") from None
        except (JoseError, ValueError, TypeError):
            raise TokenRefused("token is not a valid signed JWT") from None
        self._check_claims(decoded.claims)
        return dict(decoded.claims)

    def _check_claims(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self.leeway_s,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": False},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise TokenRefused("token expired (exp); get a new one") from None
        except MissingClaimError as error:
            raise TokenRefused(f"token lacks required claim(s): {error.claim}") from None
        except InvalidClaimError as error:
            reason = _CLAIM_REASONS.get(error.claim, f"token's {error.claim!r} claim is not valid")
            raise TokenRefused(reason) from None

    def _keys_for(self, kid: str | None) -> KeySet:
        """The cached key set, fetched when stale or when it lacks ``kid``, at most once per
        ``min_refetch_s`` (failed attempts included). While the provider cannot be reached, a set fetched
        before keeps serving: an identity provider's restart does not log everyone out."""
        with self._lock:
            now = self._clock()
            due = now - self._attempted_at >= self.min_refetch_s
            stale = self._keys is None or now - self._fetched_at >= self.jwks_cache_s
            unknown = kid is not None and self._keys is not None and all(key.kid != kid for key in self._keys)
            if (stale or unknown) and due:
                self._attempted_at = now
                try:
                    self._keys = self._fetch_keys()
                    self._fetched_at = now
                except TokenRefused:
                    if self._keys is None:
                        raise
            if self._keys is None:
                raise TokenRefused(
                    f"the issuer's keys could not be fetched (last tried {now - self._attempted_at:.0f} s ago); "
                    f"check ODS_AUTH__ISSUER ({self.issuer}) and that the provider is up"
                )
            return self._keys

    def _fetch_keys(self) -> KeySet:
        try:
            with httpx.Client(transport=self._transport, timeout=self.timeout_s) as client:
                if self._jwks_uri is None:
                    self._jwks_uri = self._discover(client)
                answer = client.get(self._jwks_uri)
                answer.raise_for_status()
                document = answer.json()
                self.fetches += 1
                signing = [key for key in document.get("keys", []) if key.get("use", "sig") == "sig"]
                return KeySet.import_key_set({"keys": signing})
        except (httpx.HTTPError, ValueError, JoseError, AttributeError, TypeError) as error:
            raise TokenRefused(
                f"the issuer's keys could not be fetched ({type(error).__name__}); check ODS_AUTH__ISSUER "
                f"({self.issuer}) and that the provider is up"
            ) from None

    def _discover(self, client: httpx.Client) -> str:
        """The ``jwks_uri`` of the issuer's discovery document, whose ``issuer`` must be ours."""
        answer = client.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
        answer.raise_for_status()
        document = answer.json()
        if document.get("issuer") != self.issuer:
            raise ValueError("discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError("discovery document has no jwks_uri")
        return jwks_uri


def _header_of(raw: bytes) -> dict[str, Any]:
    try:
        return dict(jws.extract_compact(raw).headers())
    except (JoseError, ValueError, TypeError):
        raise TokenRefused(
            "token is not a signed JWT (three base64url parts, a JSON header with 'alg')"
        ) from None
