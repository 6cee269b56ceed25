"""The Keycloak realm that infra/compose.yaml imports (infra/keycloak/ods-realm.json), checked against what
`ods serve` expects of its tokens, since Keycloak itself cannot run here: the seed's roles as realm roles,
two tenants in a ``tenant`` user attribute, a public console client with PKCE S256, the ``ods-api``
audience, a client-credentials client, and no secret in the file.

The claims each user's access token would carry are built from the clients' protocol mappers (claim name
and source) and read back with the settings' own claim mapping (``AuthSettings``), so a mapper renamed on
one side fails here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ods.domain.identity import ROLES, TENANT_PATTERN, roles_from_claims, tenant_from_claims
from ods.settings import AuthSettings

INFRA = Path(__file__).resolve().parents[2] / "infra"
REALM = INFRA / "keycloak" / "ods-realm.json"
ISSUER = "http://localhost:8180/realms/ods"


@cache
def _realm() -> dict[str, Any]:
    realm: dict[str, Any] = json.loads(REALM.read_text())
    return realm


def _client(client_id: str) -> dict[str, Any]:
    return next(client for client in _realm()["clients"] if client["clientId"] == client_id)


def _settings() -> AuthSettings:
    """The settings docs/security.md gives for this realm."""
    return AuthSettings(
        issuer=ISSUER, audience="ods-api", client_id="ods-api", console_client_id="ods-console"
    )


def _set_claim(claims: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for step in path:
        claims = claims.setdefault(step, {})
    claims[last] = value


def _access_token_claims(client: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """What Keycloak puts in ``user``'s access token through ``client``'s mappers (access-token ones)."""
    claims: dict[str, Any] = {"iss": ISSUER, "sub": user["username"], "azp": client["clientId"]}
    for mapper in client.get("protocolMappers", []):
        config = mapper["config"]
        if config.get("access.token.claim") != "true":
            continue
        kind = mapper["protocolMapper"]
        if kind == "oidc-usermodel-attribute-mapper":
            values = user.get("attributes", {}).get(config["user.attribute"], [])
            multivalued = config.get("multivalued") == "true"
            _set_claim(
                claims, config["claim.name"], values if multivalued else (values[0] if values else None)
            )
        elif kind == "oidc-usermodel-realm-role-mapper":
            _set_claim(claims, config["claim.name"], list(user.get("realmRoles", [])))
        elif kind == "oidc-audience-mapper":
            claims.setdefault("aud", []).append(config["included.client.audience"])
    return claims


def test_the_realm_holds_every_role_of_the_matrix() -> None:
    realm_roles = {role["name"] for role in _realm()["roles"]["realm"]}
    assert set(ROLES) <= realm_roles
    for user in _realm()["users"]:
        assert set(user.get("realmRoles", [])) <= set(ROLES), user["username"]


def test_users_of_two_tenants_and_several_roles_carry_their_tenant_and_roles_into_the_token() -> None:
    settings = _settings()
    console = _client("ods-console")
    people = [user for user in _realm()["users"] if "serviceAccountClientId" not in user]
    tenants = {user["attributes"]["tenant"][0] for user in people}
    assert {"acme", "globex"} <= tenants and all(TENANT_PATTERN.fullmatch(tenant) for tenant in tenants)
    assert len({role for user in people for role in user["realmRoles"]}) >= 8
    for user in people:
        claims = _access_token_claims(console, user)
        assert settings.audience in claims["aud"], "the console's tokens must be meant for the API"
        assert roles_from_claims(claims, settings.role_claim_paths) == frozenset(user["realmRoles"])
        tenant = tenant_from_claims(claims, settings.tenant_claim, settings.default_tenant)
        assert tenant == user["attributes"]["tenant"][0]


def test_the_console_client_is_public_with_pkce_s256_and_the_routes_of_the_login() -> None:
    console = _client("ods-console")
    assert console["publicClient"] is True and console["standardFlowEnabled"] is True
    assert console["implicitFlowEnabled"] is False and console["directAccessGrantsEnabled"] is False
    assert console["attributes"]["pkce.code.challenge.method"] == "S256"
    assert console["redirectUris"] and all(uri.endswith("/auth/callback") for uri in console["redirectUris"])
    logout = console["attributes"]["post.logout.redirect.uris"].split("##")
    assert all(uri.endswith("/auth/sign-in") for uri in logout)
    assert _client("ods-api")["bearerOnly"] is True


def test_the_client_credentials_client_is_confidential_and_its_account_has_a_tenant_and_roles() -> None:
    settings = _settings()
    pipelines = _client("ods-pipelines")
    assert pipelines["publicClient"] is False and pipelines["serviceAccountsEnabled"] is True
    assert (
        pipelines["clientAuthenticatorType"] == "client-secret" and pipelines["standardFlowEnabled"] is False
    )
    account = next(u for u in _realm()["users"] if u.get("serviceAccountClientId") == "ods-pipelines")
    claims = _access_token_claims(pipelines, account)
    assert settings.audience in claims["aud"]
    assert roles_from_claims(claims, settings.role_claim_paths) == frozenset(account["realmRoles"])
    assert tenant_from_claims(claims, settings.tenant_claim, None) == "acme"


def test_the_tokens_live_fifteen_minutes_and_refresh_tokens_are_single_use() -> None:
    realm = _realm()
    assert realm["accessTokenLifespan"] == 900
    assert realm["revokeRefreshToken"] is True and realm["refreshTokenMaxReuse"] == 0


def test_the_tenant_attribute_is_declared_in_the_user_profile() -> None:
    provider = _realm()["components"]["org.keycloak.userprofile.UserProfileProvider"][0]
    profile = json.loads(provider["config"]["kc.user.profile.config"][0])
    tenant = next(a for a in profile["attributes"] if a["name"] == "tenant")
    assert tenant["permissions"]["edit"] == ["admin"]  # users cannot move themselves to another tenant


def test_the_realm_file_holds_no_secret() -> None:
    for client in _realm()["clients"]:
        assert "secret" not in client, f"{client['clientId']}: Keycloak makes the secret on import"
    for user in _realm()["users"]:
        assert "credentials" not in user, f"{user['username']}: passwords are set after import"


def test_compose_imports_the_realm() -> None:
    service = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]["keycloak"]
    assert service["image"].startswith("quay.io/keycloak/keycloak:") and not service["image"].endswith(
        ":latest"
    )
    assert "start-dev" in service["command"] and "--import-realm" in service["command"]
    mounts = [volume.split(":") for volume in service["volumes"]]
    assert any(
        (INFRA / source / REALM.name).is_file() and target == "/opt/keycloak/data/import"
        for source, target, *_ in mounts
    )
