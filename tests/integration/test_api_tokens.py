"""OpenID bearer tokens as `ods serve` meets them: tokens of a real provider (node's oidc-provider) accepted
with the roles and tenant their claims carry, and each classic token attack refused with 401.

The provider's clients stand for users of the seed's roles in two tenants, their claims in Keycloak's
layout. The tests hold the provider's private key (tests/support/oidc_provider.py makes it), so the tokens a
provider never issues (expired, wrong issuer, wrong audience, not yet valid) are signed with the very key
the server trusts: what refuses them is the claim check, not the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from ods.api.server import check_cluster_access
from ods.errors import OdsError
from ods.settings import Settings, load_settings
from tests.support.api_server import RunningApi, running_api
from tests.support.cli import run_ods
from tests.support.oidc_provider import API_CLIENT, AUDIENCE, OidcProvider, ProviderClient, new_signing_key

CLIENTS = (
    ProviderClient("analyst-a", tenant="tenant-a", realm_roles=("data_analyst", "offline_access")),
    ProviderClient("viewer-a", tenant="tenant-a", realm_roles=("data_viewer",), client_roles=("app_user",)),
    ProviderClient("appdev-b", tenant="tenant-b", client_roles=("app_developer",)),
    ProviderClient("stranger-a", tenant="tenant-a", realm_roles=("uma_authorization",)),
    ProviderClient("tenantless", realm_roles=("data_viewer",)),
)


@dataclass(frozen=True)
class TokenWorld:
    provider: OidcProvider
    api: RunningApi

    def call(self, token: str, path: str = "/api/v1/datasets", tenant: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} | ({"X-Tenant-ID": tenant} if tenant else {})
        return httpx.get(f"{self.api.base_url}{path}", headers=headers)


def _settings(home: Path, issuer: str, **auth: object) -> Settings:
    return load_settings(
        home=home, auth={"issuer": issuer, "audience": AUDIENCE, "client_id": API_CLIENT, **auth}
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenWorld]:
    folder = tmp_path_factory.mktemp("oidc")
    provider = OidcProvider.start(folder / "provider", CLIENTS, [new_signing_key("key-a")])
    try:
        with running_api(_settings(folder / "ods-home", provider.issuer)) as api:
            yield TokenWorld(provider, api)
    finally:
        provider.stop()


def test_a_providers_token_is_accepted_with_the_roles_and_tenant_of_its_claims(world: TokenWorld) -> None:
    analyst, viewer, developer = (world.provider.token(c) for c in ("analyst-a", "viewer-a", "appdev-b"))

    assert world.call(analyst).status_code == 200
    assert world.call(analyst, tenant="tenant-a").status_code == 200
    execute = httpx.post(
        f"{world.api.base_url}/api/v1/query/execute", json={}, headers={"Authorization": f"Bearer {analyst}"}
    )
    register = httpx.post(
        f"{world.api.base_url}/api/v1/datasets", json={}, headers={"Authorization": f"Bearer {analyst}"}
    )
    assert execute.status_code == 400  # allowed: the route itself finds the body empty
    assert register.status_code == 403 and register.json()["code"] == 40301
    assert "holds: data_analyst" in register.json()["message"]  # offline_access is not a platform role

    # viewer-a: data_viewer from realm_access, app_user from resource_access.ods-api
    assert world.call(viewer).status_code == 200
    assert world.call(viewer, "/api/v1/knowledge-bases").status_code == 200
    models = openai.OpenAI(base_url=f"{world.api.base_url}/v1", api_key=viewer, max_retries=0).models.list()
    assert {model.id for model in models} >= {"all-MiniLM-L6-v2"}

    assert world.call(developer, "/api/v1/knowledge-bases").status_code == 200
    assert world.call(developer).status_code == 403  # no data role
    stranger = world.call(world.provider.token("stranger-a"))
    assert stranger.status_code == 403 and "holds: none" in stranger.json()["message"]


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(provider: OidcProvider, **changes: Any) -> str:
    claims = {**provider.claims_template(), **changes}
    return jwt.encode({"alg": "RS256", "kid": provider.keys[0].kid}, claims, provider.keys[0])


def _alg_none(provider: OidcProvider) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(provider.claims_template())}."


def _hs256_with_public_key(provider: OidcProvider) -> str:
    """The classic forgery: HMAC over the token with the provider's public key (PEM) as the secret. joserfc
    refuses to make such a key, so the test signs with hmac itself."""
    public = provider.keys[0].as_pem(private=False)
    signing_input = (
        f"{_b64({'alg': 'HS256', 'kid': provider.keys[0].kid})}.{_b64(provider.claims_template())}"
    )
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unknown_kid(provider: OidcProvider) -> str:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-the-providers"})
    return jwt.encode({"alg": "RS256", "kid": "not-the-providers"}, provider.claims_template(), stranger)


def _known_kid_other_key(provider: OidcProvider) -> str:
    stranger = RSAKey.generate_key(2048)
    return jwt.encode({"alg": "RS256", "kid": provider.keys[0].kid}, provider.claims_template(), stranger)


def _tampered(provider: OidcProvider) -> str:
    header, payload, signature = provider.token("stranger-a").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["realm_access"] = {"roles": ["super_admin"]}
    return f"{header}.{_b64(claims)}.{signature}"


NOW = int(time.time())
ATTACKS: dict[str, tuple[Callable[[OidcProvider], str], str]] = {
    "alg none": (_alg_none, "token algorithm 'none' is not accepted"),
    "HS256 signed with the public key": (_hs256_with_public_key, "token algorithm 'HS256' is not accepted"),
    "wrong issuer": (lambda p: _signed(p, iss="https://evil.example.com"), "another issuer (iss)"),
    "wrong audience": (lambda p: _signed(p, aud="https://other.api"), "another audience (aud)"),
    "expired": (lambda p: _signed(p, iat=NOW - 3600, exp=NOW - 600), "token expired (exp)"),
    "not yet valid": (lambda p: _signed(p, nbf=NOW + 3600, exp=NOW + 7200), "not valid yet (nbf)"),
    "issued in the future": (lambda p: _signed(p, iat=NOW + 3600, exp=NOW + 7200), "in the future (iat)"),
    "no expiry": (lambda p: _signed(p, exp=None), "lacks required claim(s): exp"),
    "unknown kid": (_unknown_kid, "names no key of the issuer's key set (kid)"),
    "known kid, another key": (_known_kid_other_key, "signature does not verify"),
    "tampered payload": (_tampered, "signature does not verify"),
    "not a JWT": (lambda p: "not.a-jwt", "token is not a signed JWT"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_token_attacks_are_refused_with_401_and_a_reason(world: TokenWorld, attack: str) -> None:
    mint, reason = ATTACKS[attack]
    token = mint(world.provider)

    answer = world.call(token)
    openai_answer = world.call(token, "/v1/models")

    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert body["code"] == 40101 and reason in body["message"], body["message"]
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "\n" not in body["message"] and token not in answer.text
    for part in token.split("."):
        assert len(part) < 8 or part not in answer.text  # no piece of the token comes back
    assert openai_answer.status_code == 401 and openai_answer.json()["error"]["code"] == "invalid_api_key"


def test_a_valid_token_of_tenant_a_cannot_act_in_tenant_b(world: TokenWorld) -> None:
    token = world.provider.token("analyst-a")
    answer = world.call(token, tenant="tenant-b")
    assert answer.status_code == 401 and answer.json()["code"] == 40101
    assert answer.json()["message"] == (
        "X-Tenant-ID names 'tenant-b' but these credentials belong to tenant 'tenant-a'"
    )
    tenantless = world.call(world.provider.token("tenantless"))
    assert tenantless.status_code == 401 and "token names no tenant (claim 'tenant')" in tenantless.text


def test_an_issuer_closes_the_keyless_loopback_door(world: TokenWorld) -> None:
    missing = httpx.get(f"{world.api.base_url}/api/v1/datasets")
    placeholder = httpx.get(f"{world.api.base_url}/v1/models", headers={"Authorization": "Bearer unused"})
    assert missing.status_code == 401 and "access token of the configured issuer" in missing.json()["message"]
    assert placeholder.status_code == 401
    assert httpx.get(f"{world.api.base_url}/healthz").status_code == 200


def test_a_rotated_key_is_fetched_once_its_first_token_arrives(tmp_path: Path) -> None:
    old, new = new_signing_key("key-old"), new_signing_key("key-new")
    clients = [ProviderClient("analyst-a", tenant="tenant-a", realm_roles=("data_analyst",))]
    provider = OidcProvider.start(tmp_path / "provider", clients, [old])
    try:
        settings = _settings(tmp_path / "ods-home", provider.issuer, jwks_min_refetch_s=0)
        with running_api(settings) as api:
            world = TokenWorld(provider, api)
            before = provider.token("analyst-a")
            assert world.call(before).status_code == 200  # the server fetched {key-old}

            provider.stop()  # the provider rotates: signs with key-new, still publishes key-old
            provider = OidcProvider.start(tmp_path / "provider", clients, [new, old], port=provider.port)
            world = TokenWorld(provider, api)
            after = provider.token("analyst-a")
            assert json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "==="))["kid"] == "key-new"

            assert world.call(after).status_code == 200  # unknown kid: one refetch, then accepted
            assert world.call(before).status_code == 200  # tokens of the old key stay valid until exp
    finally:
        provider.stop()


@pytest.mark.postgres
def test_the_cluster_profile_will_not_serve_without_an_issuer_or_a_key(postgres_url: str) -> None:
    cluster = {
        "ODS_PROFILE": "cluster",
        "ODS_CATALOG__URL": postgres_url,
        "ODS_OBJECT_STORE__KIND": "minio",
        "ODS_OBJECT_STORE__ENDPOINT": "127.0.0.1:9",
        "ODS_OBJECT_STORE__ACCESS_KEY": "k",
        "ODS_OBJECT_STORE__SECRET_KEY": "s",
        "ODS_MILVUS__URI": "http://127.0.0.1:9",
    }
    refused = run_ods("serve", "--port", "9", env=cluster)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (
        "error: refusing to serve the API on the cluster profile without authentication: set "
        "ODS_AUTH__ISSUER and ODS_AUTH__AUDIENCE (an OpenID provider such as Keycloak), or create an API "
        "key first (`ods keys create NAME --role ROLE`)"
    )
    check_cluster_access(issuer="https://sso.example.com/realms/ods", active_keys=0)
    check_cluster_access(issuer=None, active_keys=1)
    with pytest.raises(OdsError, match="on the cluster profile without authentication"):
        check_cluster_access(issuer=None, active_keys=0)
