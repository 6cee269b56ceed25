"""Which permission each route of `ods serve` needs, checked once for every route by one dependency.

:data:`ROUTE_PERMISSIONS` maps ``"METHOD /path/template"`` to a permission of the matrix
(``ods.domain.permissions``); :func:`authorize_route` is declared on the app itself
(``FastAPI(dependencies=...)``), so every route runs it without its body saying so. A route missing from
the table is refused (fail closed), and a test walks the app's routes so a new one cannot ship without its
entry. The principal comes from ``ApiAccess`` (``ods.api.auth``), which authenticated the request.

A caller holding a permission only "as owner" (the matrix's ``owner`` cells) is let through only to a
resource it created: :data:`OWNED_RESOURCES` says where each such route names its resource, and the
check reads that resource's recorded owner. A resource that does not exist, or that another tenant
holds, is left to the route (its 404), so the check never tells a caller more than the route would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ods.api.deps import resources_of
from ods.api.tenancy import OwnedKind, owner_of
from ods.domain.identity import AuthenticationRefused, PermissionRefused, Principal
from ods.domain.permissions import OBSERVE, PUBLIC, owner_only, require, require_owner
from ods.domain.refs import parse_model_ref
from ods.errors import OdsError

ROUTE_PERMISSIONS: Final[dict[str, str]] = {
    "GET /healthz": PUBLIC,
    "GET /readyz": OBSERVE,
    "GET /metrics": OBSERVE,
    "GET /api/v1/downloads/{token}": PUBLIC,  # the signed, expiring token in the path is the credential
    # The console's sign-in (ods.api.login): the routes check the login's state, cookie and CSRF token
    "GET /auth/sign-in": PUBLIC,
    "GET /auth/login": PUBLIC,
    "GET /auth/callback": PUBLIC,
    "POST /auth/logout": PUBLIC,
    # Integration point 1: datasets
    "GET /api/v1/datasets": "datasets.view",
    "GET /api/v1/datasets/{name}": "datasets.view",
    "GET /api/v1/datasets/{name:path}": "datasets.view",
    "GET /api/v1/datasets/{name}/versions/{version}/rows": "datasets.view",
    "POST /api/v1/datasets": "datasets.create",
    "PUT /api/v1/datasets/{name}": "datasets.edit",
    "DELETE /api/v1/datasets/{name}": "datasets.delete",
    "POST /api/v1/datasets/{name}/restore": "datasets.delete",
    "POST /api/v1/datasets/{name}/credentials": "datasets.download",
    "POST /api/v1/dataset-specs/validate": "datasets.create",
    "POST /api/v1/dataset-specs/dry-run": "datasets.create",
    "GET /api/v1/dataset-specs/{name}": "datasets.create",
    "PUT /api/v1/dataset-specs/{name}": "datasets.create",
    # Integration point 3: metadata and SQL
    "GET /api/v1/metadata/databases": "metadata.view",
    "GET /api/v1/metadata/databases/{db}/tables": "metadata.view",
    "GET /api/v1/metadata/databases/{db}/tables/{table}": "metadata.view",
    "POST /api/v1/metadata/tables/search": "metadata.view",
    "POST /api/v1/query/validate": "query.validate",
    "POST /api/v1/query/execute": "query.execute",
    # Models
    "GET /api/v1/models": "models.view",
    "GET /api/v1/models/{name}": "models.view",
    "GET /api/v1/models/{name:path}": "models.view",
    "GET /api/v1/models/{name}/status": "models.view",
    "POST /api/v1/models/deploy": "models.deploy",
    "POST /api/v1/models/undeploy": "models.undeploy",
    "DELETE /api/v1/models/{name}": "models.delete",
    # Knowledge bases, questions and conversations
    "GET /api/v1/knowledge-bases": "knowledge.view",
    "GET /api/v1/knowledge-bases/{kb}": "knowledge.view",
    "GET /api/v1/knowledge-bases/{kb:path}": "knowledge.view",
    "GET /api/v1/knowledge-bases/{kb}/documents": "knowledge.view",
    "POST /api/v1/knowledge-bases/{kb}/search": "knowledge.view",
    "POST /api/v1/knowledge-bases": "knowledge.create",
    "POST /api/v1/knowledge-bases/{kb}/documents": "knowledge.edit",
    "DELETE /api/v1/knowledge-bases/{kb}/documents/{document_id}": "knowledge.edit",
    "POST /api/v1/knowledge-bases/{kb}/sync": "knowledge.edit",
    "GET /api/v1/knowledge-bases/{kb}/lineage": "knowledge.view",
    "GET /api/v1/knowledge-bases/{kb}/chunks/{chunk_id}": "knowledge.view",
    "POST /api/v1/ask": "chat.ask",
    "GET /api/v1/conversations": "chat.history",
    "GET /api/v1/conversations/{conversation_id}": "chat.history",
    "PATCH /api/v1/conversations/{conversation_id}": "chat.history",
    "DELETE /api/v1/conversations/{conversation_id}": "chat.history",
    # Runs and webhooks
    "GET /api/v1/runs": "runs.view",
    "GET /api/v1/runs/{run_id}": "runs.view",
    "GET /api/v1/pipelines": "runs.view",
    "POST /api/v1/pipelines/{name}/runs": "pipelines.run",
    "POST /api/v1/pipelines/{name}/schedules/{schedule_id}/pause": "pipelines.run",
    "POST /api/v1/pipelines/{name}/schedules/{schedule_id}/resume": "pipelines.run",
    "POST /api/v1/pipelines/{name}/triggers/{trigger_id}/pause": "pipelines.run",
    "POST /api/v1/pipelines/{name}/triggers/{trigger_id}/resume": "pipelines.run",
    "POST /api/v1/webhooks": "webhooks.manage",
    "GET /api/v1/webhooks": "webhooks.manage",
    "GET /api/v1/webhooks/{webhook_id}": "webhooks.manage",
    "DELETE /api/v1/webhooks/{webhook_id}": "webhooks.manage",
    "GET /api/v1/audit": "audit.view",
    "GET /api/v1/tenants/current": OBSERVE,  # every caller may see its own tenant's usage and quotas
    # Integration point 2: the OpenAI-compatible gateway
    "GET /v1/models": "models.invoke",
    "POST /v1/chat/completions": "models.invoke",
    "POST /v1/completions": "models.invoke",
    "POST /v1/embeddings": "models.invoke",
    # The web console (ods.api.console): any signed-in caller sees the pages; each page reads through the
    # routes above as that caller, so what a role may not read or do is refused there (and hidden).
    "GET /": OBSERVE,
    "GET /console/static/{name}": OBSERVE,
    "GET /console/datasets": OBSERVE,
    "GET /console/datasets/{name}": OBSERVE,
    "GET /console/knowledge-bases": OBSERVE,
    "GET /console/knowledge-bases/{kb}": OBSERVE,
    "GET /console/knowledge-bases/{kb}/lineage": OBSERVE,
    "GET /console/chat": OBSERVE,
    "GET /console/models": OBSERVE,
    "GET /console/metadata": OBSERVE,
    "GET /console/specs": OBSERVE,
    "GET /console/pipelines": OBSERVE,
}


@dataclass(frozen=True)
class OwnedResource:
    """Where a route whose permission has "as owner" cells names its resource: a path parameter, or a
    field of its JSON body holding ``NAME`` or ``NAME@VERSION``."""

    kind: OwnedKind
    path: str | None = None
    body: str | None = None


OWNED_RESOURCES: Final[dict[str, OwnedResource]] = {
    "PUT /api/v1/datasets/{name}": OwnedResource("dataset", path="name"),
    "DELETE /api/v1/datasets/{name}": OwnedResource("dataset", path="name"),
    "POST /api/v1/datasets/{name}/restore": OwnedResource("dataset", path="name"),
    "POST /api/v1/models/undeploy": OwnedResource("model", body="model"),
    "DELETE /api/v1/models/{name}": OwnedResource("model", path="name"),
}


def route_key(method: str, path: str) -> str:
    """The key of a route in :data:`ROUTE_PERMISSIONS`: ``"GET /api/v1/datasets"``."""
    return f"{method} {path}"


def permission_of(method: str, path: str) -> str:
    """The permission the route ``method path`` (its template) needs; PermissionRefused for a route the
    table lacks, so a route added without an entry is refused rather than open."""
    permission = ROUTE_PERMISSIONS.get(route_key(method, path))
    if permission is None:
        raise PermissionRefused(f"route {method} {path} has no permission entry; nobody may call it yet")
    return permission


async def authorize_route(request: Request) -> None:
    """Refuse the request unless its principal holds the permission of its route (PermissionRefused, 403)."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    permission = permission_of(request.method, template)
    if permission == PUBLIC:
        return
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        if permission == OBSERVE:  # ApiAccess let a loopback client through without credentials
            return
        raise AuthenticationRefused(
            "this route needs credentials: send 'Authorization: Bearer <key or token>'"
        )
    require(principal, permission)
    if owner_only(principal.roles, permission):
        await _require_ownership(request, principal, permission, route_key(request.method, template))


async def _require_ownership(request: Request, principal: Principal, permission: str, key: str) -> None:
    """Refuse unless ``principal`` created the resource the route names (see :data:`OWNED_RESOURCES`)."""
    owned = OWNED_RESOURCES.get(key)
    if owned is None:  # fail closed: an owner-only cell on a route that names no resource
        raise PermissionRefused(f"{permission} as owner is not available on {key}: ask an admin role")
    name = await _resource_name(request, owned)
    if name is None:
        return  # nothing named (or badly): the route answers 400
    catalog = resources_of(request).catalog
    held = await run_in_threadpool(owner_of, catalog, owned.kind, name, principal.tenant)
    if held is None:
        return  # unknown here, or another tenant's: the route answers 404
    require_owner(principal, permission, f"{owned.kind} {name!r}", held.owner)


async def _resource_name(request: Request, owned: OwnedResource) -> str | None:
    if owned.path is not None:
        value = request.path_params.get(owned.path)
        return value if isinstance(value, str) else None
    try:
        body = json.loads(await request.body() or b"null")  # FastAPI read and kept it already
    except ValueError:
        return None
    value = body.get(owned.body) if isinstance(body, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return parse_model_ref(value)[0]
    except OdsError:
        return None
