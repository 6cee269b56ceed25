"""The browser login of an OpenID provider, as a confidential or public client: authorization code with
PKCE (S256), the code exchanged at the token endpoint, refresh, and the end-session URL.

The provider's discovery document names its endpoints (cached). ID tokens are checked with
:class:`~ods.adapters.identity.oidc.OidcVerifier` for the client's own audience (signature, algorithm,
``iss``, ``aud``, ``exp``) and then for the login's ``nonce``; access tokens are the API verifier's to
check. Every refusal is a :class:`LoginRefused` naming the failed step, never a token or code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from ods.adapters.identity.oidc import OidcVerifier
from ods.domain.identity import AuthenticationRefused, TokenRefused

DISCOVERY_CACHE_S: Final = 3600.0


class LoginRefused(AuthenticationRefused):
    """A browser login could not finish: a bad state, a refused code, an ID token failing a check."""


@dataclass(frozen=True)
class ProviderEndpoints:
    """What the discovery document says about where a login goes."""

    authorization_endpoint: str
    token_endpoint: str
    end_session_endpoint: str | None = None


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint answered: ``expires_at`` is the access token's expiry (epoch seconds)."""

    access_token: str
    expires_at: float
    refresh_token: str | None = None
    id_token: str | None = None


@dataclass(frozen=True)
class PkcePair:
    """A PKCE verifier (kept by the server) and its S256 challenge (sent to the provider)."""

    verifier: str
    challenge: str


def new_pkce_pair() -> PkcePair:
    """A random code verifier (86 characters, RFC 7636's alphabet) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return PkcePair(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


class OidcLoginClient:
    """One client of one issuer. Safe to share between threads."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        leeway_s: int = 30,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self.timeout_s = timeout_s
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        self._endpoints: ProviderEndpoints | None = None
        self._discovered_at = float("-inf")
        self.id_tokens = OidcVerifier(
            issuer=issuer, audience=client_id, leeway_s=leeway_s, transport=transport, clock=clock
        )

    def endpoints(self) -> ProviderEndpoints:
        """The provider's endpoints from its discovery document (cached for an hour)."""
        with self._lock:
            now = self._clock()
            if self._endpoints is None or now - self._discovered_at >= DISCOVERY_CACHE_S:
                self._endpoints = self._discover()
                self._discovered_at = now
            return self._endpoints

    def authorization_url(
        self, *, redirect_uri: str, scopes: str, state: str, nonce: str, code_challenge: str
    ) -> str:
        """Where the browser goes to sign in: the authorization endpoint with a code + PKCE request."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = self.endpoints().authorization_endpoint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenSet:
        """The tokens the provider gives for ``code`` and its PKCE verifier; LoginRefused when it refuses."""
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
            },
            step="the authorization code was refused",
        )

    def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for ``refresh_token`` (kept when the provider sends no new one); LoginRefused when
        the provider refuses it (expired, revoked, the provider's session ended)."""
        tokens = self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            step="the refresh token was refused",
        )
        if tokens.refresh_token is None:
            return TokenSet(tokens.access_token, tokens.expires_at, refresh_token, tokens.id_token)
        return tokens

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` once signature, ``iss``, ``aud`` (this client), ``exp`` and ``nonce``
        check; LoginRefused naming the failed check."""
        try:
            claims = self.id_tokens.verify(id_token)
        except TokenRefused as error:
            raise LoginRefused(f"ID token refused: {error}") from None
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise LoginRefused("ID token refused: its nonce is not this login's")
        return claims

    def end_session_url(self, *, id_token_hint: str | None, post_logout_redirect_uri: str) -> str | None:
        """The provider's logout URL for this session; None when the provider has no end-session endpoint."""
        try:
            endpoint = self.endpoints().end_session_endpoint
        except LoginRefused:
            return None
        if endpoint is None:
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token_hint:
            query["id_token_hint"] = id_token_hint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    def _token_request(self, form: dict[str, str], *, step: str) -> TokenSet:
        body = {**form, "client_id": self.client_id}
        if self._client_secret is not None:
            body["client_secret"] = self._client_secret
        endpoint = self.endpoints().token_endpoint
        try:
            with httpx.Client(transport=self._transport, timeout=self.timeout_s) as client:
                answer = client.post(endpoint, data=body, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise LoginRefused(
                f"{step}: the token endpoint {endpoint} could not be reached ({type(error).__name__})"
            ) from None
        try:
            document = answer.json()
        except ValueError:
            document = {}
        if answer.status_code != 200 or not isinstance(document, dict):
            error_code = document.get("error") if isinstance(document, dict) else None
            shown = str(error_code)[:60] if isinstance(error_code, str) else f"HTTP {answer.status_code}"
            raise LoginRefused(f"{step} by the provider ({shown})")
        access = document.get("access_token")
        if not isinstance(access, str) or not access:
            raise LoginRefused(f"{step}: the provider's answer holds no access token")
        expires_in = document.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        refresh = document.get("refresh_token")
        id_token = document.get("id_token")
        return TokenSet(
            access_token=access,
            expires_at=self._clock() + lifetime,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
        )

    def _discover(self) -> ProviderEndpoints:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            with httpx.Client(transport=self._transport, timeout=self.timeout_s) as client:
                answer = client.get(url)
                answer.raise_for_status()
                document = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise LoginRefused(
                f"the provider's discovery document {url} could not be read ({type(error).__name__}); check "
                "ODS_AUTH__ISSUER and that the provider is up"
            ) from None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise LoginRefused(f"the discovery document {url} names another issuer than ODS_AUTH__ISSUER")
        authorize, token = document.get("authorization_endpoint"), document.get("token_endpoint")
        if not isinstance(authorize, str) or not isinstance(token, str):
            raise LoginRefused(f"the discovery document {url} lacks an authorization or token endpoint")
        end_session = document.get("end_session_endpoint")
        return ProviderEndpoints(authorize, token, end_session if isinstance(end_session, str) else None)
