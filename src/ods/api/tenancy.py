"""Which tenant a request acts in, and the one way a route loads a tenant's resource.

Every dataset, model, knowledge base, conversation and webhook belongs to a tenant (catalog migration
0012); documents and chunks belong to their knowledge base's, endpoints to their model's. A caller sees
only its own tenant's: lists are filtered in the catalog query, and a resource of another tenant is
answered exactly as one that does not exist (404, code 40401), with a message naming only the caller's
own resources, so nothing tells a caller what another tenant holds. Every principal, platform roles
included, acts within its own tenant (docs/security.md, "Tenants").

Names are unique within a tenant (catalog migration 0015): two tenants may each hold a dataset ``sales``.
A route reads and writes through :meth:`Catalog.for_tenant` of the caller's tenant (the
``owned_*`` helpers below), whose lookups by name find that tenant's rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Final, Literal, Protocol, TypeVar

from fastapi import Depends, Request

from ods.adapters.catalog import Catalog
from ods.adapters.catalog.records import (
    ConversationRecord,
    DatasetRecord,
    DatasetVersionRecord,
    KnowledgeBaseRecord,
    ModelRecord,
    WebhookRecord,
)
from ods.api.envelope import ConflictError
from ods.domain.identity import DEFAULT_TENANT, Principal
from ods.domain.names import display_name
from ods.domain.refs import parse_dataset_ref
from ods.errors import NotFoundError

_LISTED_NAMES: Final = 20


def tenant_of(request: Request) -> str:
    """The tenant of the request's principal (``ods.api.auth`` set it); the default tenant when the route
    let a loopback caller through without one."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return DEFAULT_TENANT if principal is None else principal.tenant


CallerTenant = Annotated[str, Depends(tenant_of)]
"""The tenant a route acts in, injected: ``def route(..., tenant: CallerTenant)``."""


def subject_of(request: Request) -> str | None:
    """The subject of the request's principal: what a dataset, model or knowledge base it creates records
    as its owner; None for a loopback caller let through without one."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return None if principal is None else principal.subject


CallerSubject = Annotated[str | None, Depends(subject_of)]
"""The subject a route creates resources as, injected: ``def route(..., owner: CallerSubject)``."""

OwnedKind = Literal["dataset", "model", "knowledge base"]


def _missing(kind: str, name: str, known: Sequence[str]) -> NotFoundError:
    """The 404 of a name the tenant does not hold, listing only the tenant's own names."""
    if not known:
        return NotFoundError(f"no {kind} named {name!r}; the catalog holds no {kind}s yet")
    shown = ", ".join(map(display_name, known[:_LISTED_NAMES])) + (
        ", ..." if len(known) > _LISTED_NAMES else ""
    )
    return NotFoundError(f"no {kind} named {name!r}; known {kind}s: {shown}")


class _TenantRow(Protocol):
    @property
    def tenant(self) -> str: ...


RowT = TypeVar("RowT", bound=_TenantRow)


def _held(load: Callable[[], RowT], tenant: str) -> RowT | None:
    """What ``load`` reads when it exists and ``tenant`` holds it; None otherwise (the caller's 404)."""
    try:
        record = load()
    except NotFoundError:
        return None
    return record if record.tenant == tenant else None


def owned_dataset(catalog: Catalog, name: str, tenant: str) -> DatasetRecord:
    """``tenant``'s dataset ``name``; NotFoundError naming only its own datasets otherwise."""
    return catalog.for_tenant(tenant).get_dataset(name)


def owned_dataset_version(
    catalog: Catalog, name: str, version: int | None, tenant: str
) -> DatasetVersionRecord:
    """Version ``version`` (None: the newest registered) of ``tenant``'s dataset ``name``."""
    return catalog.for_tenant(tenant).get_dataset_version(name, version)


def owned_knowledge_base(catalog: Catalog, name: str, tenant: str) -> KnowledgeBaseRecord:
    """``tenant``'s knowledge base ``name``; NotFoundError naming only its own otherwise."""
    return catalog.for_tenant(tenant).get_knowledge_base(name)


def owned_model(catalog: Catalog, name: str, tenant: str) -> ModelRecord:
    """``tenant``'s model ``name``; NotFoundError naming only its own models otherwise."""
    models = [model for model in catalog.list_models() if model.tenant == tenant]
    record = next((model for model in models if model.name == name), None)
    if record is None:
        raise _missing("model", name, [model.name for model in models])
    return record


def owner_of(
    catalog: Catalog, kind: OwnedKind, name: str, tenant: str
) -> DatasetRecord | ModelRecord | KnowledgeBaseRecord | None:
    """``tenant``'s ``kind`` called ``name`` (its ``owner`` is who created it); None when ``tenant``
    holds none (the route's 404)."""
    loaders: dict[OwnedKind, Callable[[], DatasetRecord | ModelRecord | KnowledgeBaseRecord]] = {
        "dataset": lambda: owned_dataset(catalog, name, tenant),
        "knowledge base": lambda: owned_knowledge_base(catalog, name, tenant),
        "model": lambda: owned_model(catalog, name, tenant),
    }
    try:
        return loaders[kind]()
    except NotFoundError:
        return None


def owned_conversation(catalog: Catalog, conversation_id: str, tenant: str) -> ConversationRecord:
    """Conversation ``conversation_id`` with its messages when ``tenant`` holds it; else NotFoundError."""
    record = _held(lambda: catalog.get_conversation(conversation_id), tenant)
    if record is None:
        raise NotFoundError(f"no conversation with id {conversation_id!r}")
    return record


def owned_webhook(catalog: Catalog, webhook_id: int, tenant: str) -> WebhookRecord:
    """Webhook ``webhook_id`` when ``tenant`` holds it; else NotFoundError as if it did not exist."""
    record = _held(lambda: catalog.get_webhook(webhook_id), tenant)
    if record is None:
        raise NotFoundError(f"no webhook with id {webhook_id}")
    return record


def name_taken(kind: str, name: str) -> ConflictError:
    """The 409 of a create whose name the caller's tenant already uses."""
    return ConflictError(f"{kind} name {name!r} is already taken; choose another name")


def claim_dataset(catalog: Catalog, name: str, tenant: str, owner: str | None = None) -> DatasetRecord:
    """``tenant``'s dataset ``name`` to register a version of: created as its own (owned by ``owner``)
    when new."""
    return catalog.for_tenant(tenant).ensure_dataset(name, owner=owner)


def tenant_dataset_refs(catalog: Catalog, datasets: Sequence[str] | None, tenant: str) -> list[str]:
    """The dataset refs a query or question of ``tenant`` may read: ``datasets`` (``NAME`` or
    ``NAME@VERSION``) when each names one of its datasets, else the newest registered version of each
    of its datasets. The SQL warehouse is opened over these alone, so another tenant's table is an
    unknown table there."""
    if datasets is None or len(datasets) == 0:
        registered = catalog.latest_registered_versions(tenant=tenant)
        if not registered:
            raise NotFoundError(
                "there is no registered dataset to query; register one with POST /api/v1/datasets"
            )
        return [f"{record.dataset_name}@{record.version}" for record in registered]
    if isinstance(datasets, str):
        raise TypeError("datasets must be a sequence of dataset refs, not a single string")
    for ref in datasets:
        owned_dataset(catalog, parse_dataset_ref(ref)[0], tenant)
    return list(datasets)
