"""Which tenant a request acts in, and the one way a route loads a tenant's resource.

Every dataset, model, knowledge base, conversation and webhook belongs to a tenant (catalog migration
0012); documents and chunks belong to their knowledge base's, endpoints to their model's. A caller sees
only its own tenant's: lists are filtered in the catalog query, and a resource of another tenant is
answered exactly as one that does not exist (404, code 40401), with a message naming only the caller's
own resources, so nothing tells a caller what another tenant holds. Every principal, platform roles
included, acts within its own tenant (docs/security.md, "Tenants").

Names stay unique across tenants for now: creating a name another tenant holds is a 409 that does not
say whose it is (:func:`claim_dataset`, :func:`check_name_free`).
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
    """Dataset ``name`` when ``tenant`` holds it; else NotFoundError as if it did not exist."""
    record = _held(lambda: catalog.get_dataset(name), tenant)
    if record is None:
        raise _missing("dataset", name, [item.name for item in catalog.list_datasets(tenant=tenant)])
    return record


def owned_dataset_version(
    catalog: Catalog, name: str, version: int | None, tenant: str
) -> DatasetVersionRecord:
    """Version ``version`` (None: the newest registered) of ``tenant``'s dataset ``name``."""
    owned_dataset(catalog, name, tenant)
    return catalog.get_dataset_version(name, version)


def owned_knowledge_base(catalog: Catalog, name: str, tenant: str) -> KnowledgeBaseRecord:
    """Knowledge base ``name`` when ``tenant`` holds it; else NotFoundError as if it did not exist."""
    record = _held(lambda: catalog.get_knowledge_base(name), tenant)
    if record is None:
        known = [item.name for item in catalog.list_knowledge_bases(tenant=tenant)]
        raise _missing("knowledge base", name, known)
    return record


def owned_model(catalog: Catalog, name: str, tenant: str) -> ModelRecord:
    """Model ``name`` when ``tenant`` holds it; else NotFoundError as if it did not exist."""
    models = catalog.list_models()
    record = next((model for model in models if model.name == name), None)
    if record is None or record.tenant != tenant:
        raise _missing("model", name, [model.name for model in models if model.tenant == tenant])
    return record


def owner_of(
    catalog: Catalog, kind: OwnedKind, name: str, tenant: str
) -> DatasetRecord | ModelRecord | KnowledgeBaseRecord | None:
    """The ``kind`` called ``name`` when ``tenant`` holds it (its ``owner`` is who created it); None when
    it does not exist or another tenant holds it (the route's 404)."""
    if kind == "dataset":
        return _held(lambda: catalog.get_dataset(name), tenant)
    if kind == "knowledge base":
        return _held(lambda: catalog.get_knowledge_base(name), tenant)
    try:
        return owned_model(catalog, name, tenant)
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
    """The 409 of a create whose name is already used (by this tenant or another: it does not say)."""
    return ConflictError(
        f"{kind} name {name!r} is already taken; choose another name "
        "(names are unique across the whole platform for now)"
    )


def claim_dataset(catalog: Catalog, name: str, tenant: str, owner: str | None = None) -> DatasetRecord:
    """Dataset ``name`` for ``tenant`` to register a version of: created as its own (owned by ``owner``)
    when new; a name another tenant holds is a ConflictError that does not say whose."""
    record = catalog.ensure_dataset(name, tenant=tenant, owner=owner)
    if record.tenant != tenant:
        raise name_taken("dataset", name)
    return record


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


def tenant_names(catalog: Catalog, tenant: str) -> frozenset[str]:
    """The names of ``tenant``'s datasets, knowledge bases and models (what its runs work on)."""
    return frozenset(
        [
            *(record.name for record in catalog.list_datasets(tenant=tenant)),
            *(record.name for record in catalog.list_knowledge_bases(tenant=tenant)),
            *(record.name for record in catalog.list_models() if record.tenant == tenant),
        ]
    )


def run_is_owned(knowledge_base: str | None, target: str | None, names: frozenset[str]) -> bool:
    """Whether a server run belongs to the tenant holding ``names``: an ingest by its knowledge base, a
    prepare by its dataset, a deploy or undeploy by its model (``NAME@VERSION``)."""
    subject = knowledge_base or (target or "").partition("@")[0]
    return subject in names
