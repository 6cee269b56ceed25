"""Who is calling: the principal every request of `ods serve` runs as, and how a token's claims name it.

A principal is a subject (a token's ``sub``, an API key's name, or the local user), the tenant it acts in
and the roles it holds. Roles come from the seed's four ladders (:data:`ROLES`); a token's roles are read
where Keycloak puts them (``realm_access.roles`` and ``resource_access.<client>.roles``) or from any
dotted claim path configured instead, and roles this platform does not know are dropped, not refused (a
realm carries roles of other applications). Nothing here reads settings or opens a connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ods.errors import OdsError

PLATFORM_ROLES: Final = ("super_admin", "platform_admin", "tenant_admin")
DATA_ROLES: Final = ("data_admin", "data_engineer", "data_analyst", "data_viewer")
MODEL_ROLES: Final = ("ml_admin", "ml_engineer", "ml_developer", "ml_viewer")
APP_ROLES: Final = ("app_admin", "app_developer", "app_user")
ROLES: Final = (*PLATFORM_ROLES, *DATA_ROLES, *MODEL_ROLES, *APP_ROLES)
"""Every role the permission matrix knows, by ladder (platform, data, model, application)."""

DEFAULT_TENANT: Final = "default"
TENANT_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TENANT_RULE: Final = "1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit"

PrincipalKind = Literal["token", "api_key", "local"]


class AuthenticationRefused(OdsError):
    """A request's credentials are missing or not valid (HTTP 401, code 40101). The message says why in
    one line and never repeats the credentials."""


class TokenRefused(AuthenticationRefused):
    """A bearer token failed a check: signature, algorithm, key, issuer, audience, lifetime or tenant."""


class PermissionRefused(OdsError):
    """The caller is known but none of its roles may do this (HTTP 403, code 40301)."""


class InvalidRoleError(OdsError, ValueError):
    """A role named on the command line is not one of :data:`ROLES`."""


class InvalidTenantError(OdsError, ValueError):
    """A tenant name breaks :data:`TENANT_RULE`."""


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: ``subject`` within ``tenant``, holding ``roles``."""

    subject: str
    tenant: str
    roles: frozenset[str]
    kind: PrincipalKind

    @property
    def rate_key(self) -> str:
        """The caller's identity for rate limits and logs: never a secret."""
        return f"{self.kind}:{self.tenant}:{self.subject}"


def local_admin(address: str) -> Principal:
    """The caller of a local-profile server on loopback with no issuer and no key: a super admin, as
    every such caller was before roles existed."""
    return Principal(
        subject=f"local@{address}", tenant=DEFAULT_TENANT, roles=frozenset({"super_admin"}), kind="local"
    )


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    """``roles`` as a set when each is known and there is at least one; else InvalidRoleError naming the
    first unknown one and the roles there are."""
    chosen = [role.strip() for role in roles]
    if not chosen:
        raise InvalidRoleError(f"name at least one role (--role ROLE); roles: {', '.join(ROLES)}")
    for role in chosen:
        if role not in ROLES:
            shown = repr(role) if len(role) <= 40 else repr(role[:37]) + "…"
            raise InvalidRoleError(f"unknown role {shown}; roles: {', '.join(ROLES)}")
    return frozenset(chosen)


def check_tenant(tenant: str) -> str:
    """``tenant`` when it follows :data:`TENANT_RULE`; else InvalidTenantError naming it."""
    if TENANT_PATTERN.fullmatch(tenant) is None:
        shown = repr(tenant) if len(tenant) <= 40 else repr(tenant[:37]) + "…"
        raise InvalidTenantError(f"tenant {shown} is not valid: use {TENANT_RULE}, e.g. 'default'")
    return tenant


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` in ``claims`` (``realm_access.roles``), None where any step is missing.
    A claim whose own name holds dots (``https://example.com/roles``) is found whole first."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def roles_from_claims(claims: Mapping[str, Any], role_claims: Sequence[str]) -> frozenset[str]:
    """The known roles found at any of ``role_claims`` (dotted paths to a list of strings; ``{client}``
    already filled in), unknown ones dropped."""
    found: set[str] = set()
    for path in role_claims:
        value = claim_at(claims, path)
        if isinstance(value, str):
            value = value.split()
        if isinstance(value, list):
            found.update(role for role in value if isinstance(role, str) and role in ROLES)
    return frozenset(found)


def tenant_from_claims(claims: Mapping[str, Any], tenant_claim: str, default: str | None) -> str:
    """The tenant a token names at ``tenant_claim``, else ``default``; TokenRefused when neither is there
    or the value breaks the tenant rule (the value is not echoed: it came from the token)."""
    value = claim_at(claims, tenant_claim)
    if value is None:
        if default is None:
            raise TokenRefused(
                f"token names no tenant (claim {tenant_claim!r}); set ODS_AUTH__DEFAULT_TENANT or map the "
                "claim with ODS_AUTH__TENANT_CLAIM"
            )
        return default
    if not isinstance(value, str) or TENANT_PATTERN.fullmatch(value) is None:
        raise TokenRefused(
            f"token's tenant claim {tenant_claim!r} is not a valid tenant name ({TENANT_RULE})"
        )
    return value
