"""The seed's permission matrix: which roles may do what, one table that drives both `ods serve`'s checks
(``ods.api.authorization`` maps every route to one permission here) and docs/security.md (generated from
it by :func:`matrix_markdown`, and checked against it by a test).

``super_admin`` may do everything. Cells marked "as owner" name roles the seed allows only on resources
they own: the catalog records who created a dataset, model or knowledge base (its ``owner``, the
creator's subject), and a caller holding the permission only through such a cell passes
:func:`require_owner` on the resource or is refused (403; ``ods.api.authorization`` applies it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ods.domain.identity import APP_ROLES, DATA_ROLES, MODEL_ROLES, ROLES, PermissionRefused, Principal

SUPER_ADMIN: Final = "super_admin"
PUBLIC: Final = "public"
"""Routes anyone may call without credentials (``/healthz``, signed download URLs)."""
OBSERVE: Final = "platform.observe"
"""Readiness and metrics: open to this machine's clients, any authenticated caller elsewhere."""


@dataclass(frozen=True)
class Permission:
    """One cell row of the matrix: ``area``'s ``action``, the roles allowed it (besides super_admin), and
    those of them the seed allows only as the resource's owner."""

    area: str
    action: str
    roles: frozenset[str]
    description: str
    as_owner: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.area}.{self.action}"


def _permission(
    area: str, action: str, roles: Iterable[str], description: str, as_owner: Iterable[str] = ()
) -> Permission:
    return Permission(area, action, frozenset(roles), description, frozenset(as_owner))


_ALL_DATA = DATA_ROLES
_INVOKERS = ("ml_admin", "ml_engineer", "ml_developer", *APP_ROLES)

MATRIX: Final[tuple[Permission, ...]] = (
    _permission("datasets", "view", _ALL_DATA, "list datasets, read one, preview its rows"),
    _permission("datasets", "create", ("data_admin", "data_engineer"), "register a dataset"),
    _permission(
        "datasets", "edit", ("data_admin", "data_engineer"), "update description and tags", ("data_engineer",)
    ),
    _permission(
        "datasets", "delete", ("data_admin", "data_engineer"), "archive and restore", ("data_engineer",)
    ),
    _permission(
        "datasets", "download", ("data_admin", "data_engineer", "data_analyst"), "download credentials"
    ),
    _permission("metadata", "view", _ALL_DATA, "databases, tables and columns; table search"),
    _permission("query", "validate", _ALL_DATA, "check SQL with the guard"),
    _permission("query", "execute", ("data_admin", "data_engineer", "data_analyst"), "run guarded SQL"),
    _permission("models", "view", MODEL_ROLES, "list models, read one, endpoint status"),
    _permission("models", "train", ("ml_admin", "ml_engineer", "ml_developer"), "train (no HTTP route yet)"),
    _permission("models", "deploy", ("ml_admin", "ml_engineer"), "deploy a model version"),
    _permission(
        "models", "undeploy", ("ml_admin", "ml_engineer"), "stop a model's endpoints", ("ml_engineer",)
    ),
    _permission(
        "models",
        "delete",
        ("ml_admin", "ml_engineer"),
        "delete a model and its versions (not while served)",
        ("ml_engineer",),
    ),
    _permission("models", "invoke", _INVOKERS, "OpenAI gateway: list, chat, completions, embeddings"),
    _permission("knowledge", "view", APP_ROLES, "list knowledge bases, read one, its documents, search"),
    _permission("knowledge", "create", ("app_admin", "app_developer"), "create a knowledge base"),
    _permission("knowledge", "edit", ("app_admin", "app_developer"), "upload and delete documents"),
    _permission("chat", "ask", APP_ROLES, "ask a question (RAG and SQL)"),
    _permission("chat", "history", APP_ROLES, "list, read and delete conversations"),
    _permission(
        "runs",
        "view",
        (
            "platform_admin",
            "tenant_admin",
            "data_admin",
            "data_engineer",
            "ml_admin",
            "ml_engineer",
            "app_admin",
            "app_developer",
        ),
        "state of server runs (registrations, ingests, deploys)",
    ),
    _permission(
        "pipelines",
        "run",
        ("platform_admin",),
        "start a deployment on Prefect; pause and resume its schedules",
    ),
    _permission("webhooks", "manage", ("platform_admin", "tenant_admin"), "create, list and delete webhooks"),
    _permission(
        "audit", "view", ("platform_admin", "tenant_admin"), "read the audit log (tenant_admin: its tenant's)"
    ),
    _permission("platform", "observe", ROLES, "readiness and metrics"),
)

PERMISSIONS: Final[dict[str, Permission]] = {permission.name: permission for permission in MATRIX}


def is_allowed(roles: Iterable[str], permission: str) -> bool:
    """Whether any of ``roles`` holds ``permission`` (a name of :data:`PERMISSIONS`, or PUBLIC)."""
    if permission == PUBLIC:
        return True
    held = frozenset(roles)
    return SUPER_ADMIN in held or bool(held & PERMISSIONS[permission].roles)


def require(principal: Principal, permission: str) -> None:
    """Nothing when ``principal`` holds ``permission``; else PermissionRefused naming the roles that would."""
    if is_allowed(principal.roles, permission):
        return
    allowed = sorted(PERMISSIONS[permission].roles | {SUPER_ADMIN})
    held = ", ".join(sorted(principal.roles)) or "none"
    raise PermissionRefused(
        f"{permission} needs one of the roles {', '.join(allowed)}; this caller holds: {held}"
    )


def owner_only(roles: Iterable[str], permission: str) -> bool:
    """Whether ``roles`` hold ``permission`` only through its "as owner" cells: the caller may act on a
    resource it owns and on no other."""
    held = frozenset(roles)
    cell = PERMISSIONS.get(permission)
    if cell is None or SUPER_ADMIN in held or held & (cell.roles - cell.as_owner):
        return False
    return bool(held & cell.as_owner)


def require_owner(principal: Principal, permission: str, resource: str, owner: str | None) -> None:
    """Nothing when ``principal`` created ``resource`` (its recorded ``owner``); else PermissionRefused
    saying who may act on it instead. Call it when :func:`owner_only` holds."""
    if owner is not None and owner == principal.subject:
        return
    cell = PERMISSIONS[permission]
    admins = ", ".join(sorted((cell.roles - cell.as_owner) | {SUPER_ADMIN}))
    whose = "it was made before owners were recorded" if owner is None else "another caller created it"
    roles = ", ".join(sorted(frozenset(principal.roles) & cell.as_owner))
    raise PermissionRefused(
        f"{permission}: {roles} may act only on what it created, and {whose}: {resource}; "
        f"ask one of the roles {admins}"
    )


def matrix_markdown() -> str:
    """The matrix as the Markdown table docs/security.md carries: one row per permission, one column per
    ladder, ``✓`` allowed, ``owner`` allowed on what the caller created only, ``·`` refused."""
    ladders = ("platform", "data", "model", "app")
    header = "| permission | what | " + " | ".join(ROLES) + " |"
    rule = "|---|---|" + "|".join(":-:" for _ in ROLES) + "|"
    rows = [f"<!-- roles by ladder: {', '.join(ladders)} -->", header, rule]
    for permission in MATRIX:
        cells = []
        for role in ROLES:
            if role in permission.as_owner:
                cells.append("owner")
            elif role == SUPER_ADMIN or role in permission.roles:
                cells.append("✓")
            else:
                cells.append("·")
        rows.append(f"| `{permission.name}` | {permission.description} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
