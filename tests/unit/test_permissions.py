"""The permission matrix: every route of the app has its permission, the docs carry the same table, and
claims and roles are read as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from ods.api.app import create_app
from ods.api.auth import ALWAYS_OPEN, OPEN_ON_LOOPBACK, principal_of_claims
from ods.api.authorization import ROUTE_PERMISSIONS, authorize_route, route_key
from ods.api.resources import Resources
from ods.domain.identity import (
    ROLES,
    InvalidRoleError,
    PermissionRefused,
    Principal,
    TokenRefused,
    check_roles,
    roles_from_claims,
)
from ods.domain.permissions import MATRIX, OBSERVE, PERMISSIONS, PUBLIC, is_allowed, matrix_markdown, require
from ods.settings import AuthSettings, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _app_routes(tmp_path: Path) -> list[tuple[str, str, RouteContext]]:
    settings = load_settings(home=tmp_path / "ods-home")
    app = create_app(settings, Resources(settings))  # opens nothing
    found = []
    for context in iter_route_contexts(app.routes):
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                found.append((method, str(context.path), context))
    return found


def test_every_route_has_exactly_one_permission_and_runs_the_check(tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    api_routes = {route_key(m, p): c for m, p, c in routes if isinstance(c.original_route, APIRoute)}
    others = {p for _, p, c in routes if not isinstance(c.original_route, APIRoute)}

    assert sorted(set(api_routes) - set(ROUTE_PERMISSIONS)) == []  # a new route needs its entry
    assert sorted(set(ROUTE_PERMISSIONS) - set(api_routes)) == []  # no entry outlives its route
    assert others <= OPEN_ON_LOOPBACK | ALWAYS_OPEN  # the schema and docs pages: ApiAccess's rule
    for key, context in api_routes.items():
        calls = [dependency.call for dependency in context.dependant.dependencies]
        assert authorize_route in calls, f"{key} does not run authorize_route"
    for permission in ROUTE_PERMISSIONS.values():
        assert permission == PUBLIC or permission in PERMISSIONS
    assert {ROUTE_PERMISSIONS["GET /healthz"], ROUTE_PERMISSIONS["GET /api/v1/downloads/{token}"]} == {PUBLIC}
    assert ROUTE_PERMISSIONS["GET /metrics"] == OBSERVE


def test_docs_carry_the_matrix_and_route_table_of_the_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert matrix_markdown() in text, f"docs/security.md: replace the matrix with\n{matrix_markdown()}"
    routes = "| route | permission |\n|---|---|\n" + "".join(
        f"| `{key}` | `{permission}` |\n" for key, permission in ROUTE_PERMISSIONS.items()
    )
    assert routes + "\n" in text, f"docs/security.md: replace the route table with\n{routes}"


def test_matrix_follows_the_seed() -> None:
    cell = {permission.name: permission for permission in MATRIX}
    assert cell["datasets.create"].roles == {"data_admin", "data_engineer"}
    assert cell["datasets.edit"].as_owner == {"data_engineer"}
    assert cell["datasets.view"].roles == {"data_admin", "data_engineer", "data_analyst", "data_viewer"}
    assert "data_viewer" not in cell["datasets.download"].roles
    assert cell["models.deploy"].roles == {"ml_admin", "ml_engineer"}
    assert cell["models.train"].roles == {"ml_admin", "ml_engineer", "ml_developer"}
    assert all(role in ROLES for permission in MATRIX for role in permission.roles)
    for permission in MATRIX:
        assert is_allowed({"super_admin"}, permission.name)
        assert not is_allowed(set(), permission.name)


def test_a_refusal_names_the_roles_that_would_do() -> None:
    viewer = Principal("ann", "default", frozenset({"data_viewer"}), "api_key")
    require(viewer, "datasets.view")
    with pytest.raises(PermissionRefused, match=r"datasets\.create needs one of the roles data_admin, "):
        require(viewer, "datasets.create")


def test_roles_are_read_from_keycloaks_claims_and_unknown_ones_dropped() -> None:
    claims = {
        "sub": "ann",
        "tenant": "acme",
        "realm_access": {"roles": ["data_viewer", "offline_access", "uma_authorization"]},
        "resource_access": {"ods-api": {"roles": ["app_user"]}, "account": {"roles": ["manage-account"]}},
    }
    auth = AuthSettings(issuer="https://sso.example.com/realms/ods", audience="ods-api")
    principal = principal_of_claims(claims, auth)
    assert principal == Principal("ann", "acme", frozenset({"data_viewer", "app_user"}), "token")
    assert roles_from_claims({"https://ods/roles": ["ml_admin"]}, ["https://ods/roles"]) == {"ml_admin"}
    assert roles_from_claims({"scope": "app_user other"}, ["scope"]) == {"app_user"}

    with pytest.raises(TokenRefused, match="token names no tenant"):
        principal_of_claims({"sub": "ann"}, auth)
    with pytest.raises(TokenRefused, match="not a valid tenant name"):
        principal_of_claims({"sub": "ann", "tenant": "../x"}, auth)
    defaulted = AuthSettings(issuer="http://127.0.0.1:1", audience="a", default_tenant="default")
    assert principal_of_claims({"sub": "ann"}, defaulted).tenant == "default"


def test_roles_named_on_the_command_line_are_checked() -> None:
    assert check_roles(["app_user", "app_user"]) == {"app_user"}
    with pytest.raises(InvalidRoleError, match="unknown role 'wizard'; roles: super_admin, platform_admin"):
        check_roles(["wizard"])
    with pytest.raises(InvalidRoleError, match="name at least one role"):
        check_roles([])


def test_an_issuer_needs_an_audience_and_https() -> None:
    with pytest.raises(ValueError, match="ODS_AUTH__ISSUER needs ODS_AUTH__AUDIENCE"):
        AuthSettings(issuer="https://sso.example.com/realms/ods")
    with pytest.raises(ValueError, match="must be an https:// URL"):
        AuthSettings(issuer="http://sso.example.com/realms/ods", audience="a")
    assert AuthSettings(issuer="http://localhost:8080/realms/ods", audience="a").issuer
