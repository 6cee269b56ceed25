"""Per-tenant quotas of `ods serve` (``ODS_QUOTAS__*``, ``ods.settings.quotas``): what a tenant holds,
the checks that keep it within its storage and document limits, and its requests per minute.

- **Usage** (:meth:`TenantQuotas.usage`): storage bytes are the documents uploaded to the tenant's
  knowledge bases (listed in the object store under each one's documents prefix) plus the Parquet files
  of its dataset versions (their sizes in the catalog); documents are those uploaded there (or, for a
  knowledge base ingested from a source of its own, the catalog's documents that are not deleted).
  Computing it lists the store, so it is reused for ``usage_cache_s``; what this process admits
  meanwhile is added to it, so a burst of uploads cannot pass the limit between two readings.
- **Uploads and registrations** past a limit are refused before anything is written: 409, code 40901,
  with the figures and what to do (:meth:`TenantQuotas.check_upload`, :meth:`TenantQuotas.check_storage`).
- **Requests per minute** of all of a tenant's callers together are counted by :class:`TenantRequestQuota`,
  a middleware inside ``ApiAccess`` (it reads the principal) with the sliding window of
  ``ods.api.rate_limits``: past the limit, 429 (code 42901) with ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Final

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ods.adapters.catalog.records import KnowledgeBaseRecord
from ods.adapters.object_store import ObjectStore
from ods.api.deps import resources_of
from ods.api.envelope import RATE_LIMITED, ConflictError, error_response
from ods.api.rate_limits import SlidingWindowLimiter, api_type_of
from ods.api.resources import Resources
from ods.domain.identity import Principal
from ods.domain.tenant_storage import knowledge_base_documents_prefix
from ods.errors import NotFoundError
from ods.factories import build_object_store
from ods.settings import QuotaSettings, TenantQuota
from ods.stages.watch import uri_resolver, watch_layout

SETTING: Final = "ODS_QUOTAS__TENANTS"
"""Where an operator raises one tenant's limits (or ODS_QUOTAS__DEFAULT__* for every tenant)."""


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant holds against its quota."""

    dataset_bytes: int
    document_bytes: int
    documents: int

    @property
    def storage_bytes(self) -> int:
        return self.dataset_bytes + self.document_bytes


class QuotaExceeded(ConflictError):
    """A write would take a tenant past one of its quotas (HTTP 409, code 40901)."""


class TenantQuotas:
    """The quotas of ``resources.settings.quotas`` checked against each tenant's usage (see the module).
    ``clock`` is injected so tests move time instead of waiting. Safe to call from many threads."""

    def __init__(self, resources: Resources, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.resources = resources
        self.settings: QuotaSettings = resources.settings.quotas
        self._clock = clock
        self._lock = threading.Lock()
        self._usage: dict[str, tuple[float, TenantUsage]] = {}

    def quota(self, tenant: str) -> TenantQuota:
        return self.settings.for_tenant(tenant)

    def usage(self, tenant: str) -> TenantUsage:
        """``tenant``'s usage, measured again when the cached one is older than ``usage_cache_s``."""
        with self._lock:
            return self._usage_locked(tenant)

    def check_upload(self, tenant: str, store: ObjectStore, key: str, size: int) -> None:
        """Refuse (QuotaExceeded) an upload of ``size`` bytes to ``key`` that would take ``tenant`` past
        its storage or documents quota; a document replaced under the same key counts its difference."""
        quota = self.quota(tenant)
        if quota.storage_bytes is None and quota.documents is None:
            return
        try:
            replaced: int | None = store.stat(key).size
        except NotFoundError:
            replaced = None
        added_bytes = size - (replaced or 0)
        added_documents = 0 if replaced is not None else 1
        with self._lock:  # the check and the admission at once: two uploads cannot both take the last room
            usage = self._usage_locked(tenant)
            if quota.documents is not None and usage.documents + added_documents > quota.documents:
                raise QuotaExceeded(
                    f"tenant {tenant!r} holds {usage.documents:,} of its {quota.documents:,} documents; "
                    f"delete documents first, or ask an operator to raise {SETTING}.{tenant}.documents"
                )
            if quota.storage_bytes is not None and usage.storage_bytes + added_bytes > quota.storage_bytes:
                raise QuotaExceeded(
                    f"uploading {size:,} bytes would take tenant {tenant!r} to "
                    f"{usage.storage_bytes + added_bytes:,} of its {quota.storage_bytes:,} storage bytes "
                    f"(documents {usage.document_bytes:,}, datasets {usage.dataset_bytes:,}); delete "
                    f"documents or datasets first, or ask an operator to raise {SETTING}.{tenant}.storage_bytes"
                )
            self._admit(tenant, usage, added_bytes, added_documents)

    def check_storage(self, tenant: str, what: str) -> None:
        """Refuse (QuotaExceeded) ``what`` (a dataset registration, whose size is known only once it is
        prepared) while ``tenant`` is at or past its storage quota."""
        quota = self.quota(tenant)
        if quota.storage_bytes is None:
            return
        usage = self.usage(tenant)
        if usage.storage_bytes >= quota.storage_bytes:
            raise QuotaExceeded(
                f"tenant {tenant!r} holds {usage.storage_bytes:,} of its {quota.storage_bytes:,} storage bytes "
                f"(documents {usage.document_bytes:,}, datasets {usage.dataset_bytes:,}), so {what} is "
                f"refused; delete documents or datasets first, or ask an operator to raise "
                f"{SETTING}.{tenant}.storage_bytes"
            )

    def _usage_locked(self, tenant: str) -> TenantUsage:
        now = self._clock()
        cached = self._usage.get(tenant)
        if cached is not None and now - cached[0] < self.settings.usage_cache_s:
            return cached[1]
        usage = self._measure(tenant)
        self._usage[tenant] = (now, usage)
        return usage

    def _admit(self, tenant: str, usage: TenantUsage, added_bytes: int, added_documents: int) -> None:
        """Add an admitted upload to the cached usage until it is measured again."""
        stamp = self._usage[tenant][0]
        self._usage[tenant] = (
            stamp,
            replace(
                usage,
                document_bytes=usage.document_bytes + added_bytes,
                documents=usage.documents + added_documents,
            ),
        )

    def _measure(self, tenant: str) -> TenantUsage:
        catalog = self.resources.catalog
        store = build_object_store(self.resources.settings)
        document_bytes = documents = 0
        for record in catalog.list_knowledge_bases(tenant=tenant):
            prefix = self._documents_prefix(store, record)
            if prefix is None:  # ingested from a source of its own: the catalog counts its documents
                counts = catalog.knowledge_base_counts(record.name).documents
                documents += sum(count for status, count in counts.items() if status != "deleted")
                continue
            for info in store.list(prefix):
                document_bytes += info.size
                documents += 1
        return TenantUsage(catalog.dataset_bytes(tenant), document_bytes, documents)

    def _documents_prefix(self, store: ObjectStore, record: KnowledgeBaseRecord) -> str | None:
        """The store prefix ``record``'s uploaded documents are in; None when it reads another source."""
        layout = watch_layout(self.resources.settings)
        prefix = knowledge_base_documents_prefix(record.name, record.tenant, layout)
        source = uri_resolver(store)(prefix)
        return prefix if (record.source_uri or "").rstrip("/") == source.rstrip("/") else None


def quotas_of(request: Request) -> TenantQuotas:
    """The app's quotas, made on first use (they hold the usage cache of this process)."""
    state = request.app.state
    quotas: TenantQuotas | None = getattr(state, "quotas", None)
    if quotas is None:
        quotas = state.quotas = TenantQuotas(resources_of(request))
    return quotas


ServerQuotas = Annotated[TenantQuotas, Depends(quotas_of)]
"""The quotas a route checks a write against, injected: ``def route(..., quotas: ServerQuotas)``."""


class TenantRequestQuota:
    """ASGI middleware, inside ``ApiAccess``: counts each authenticated request to /api/v1 and /v1 against
    its tenant's ``requests_per_minute`` and answers 429 (code 42901, ``Retry-After``) past it."""

    def __init__(self, app: ASGIApp, *, quotas: QuotaSettings) -> None:
        self.app = app
        self.quotas = quotas
        self.limiter = SlidingWindowLimiter({})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal | None = scope.get("state", {}).get("principal")
        path: str = scope.get("path", "")
        if scope["type"] != "http" or principal is None or api_type_of(path) is None:
            await self.app(scope, receive, send)
            return
        limit = self.quotas.for_tenant(principal.tenant).requests_per_minute
        decision = None if limit is None else self.limiter.hit_within(f"tenant:{principal.tenant}", limit)
        if decision is None or decision.allowed:
            await self.app(scope, receive, send)
            return
        response = error_response(
            path,
            RATE_LIMITED,
            f"tenant {principal.tenant!r} reached its quota of {decision.limit} requests per minute; retry "
            f"in {decision.reset_s} s, or ask an operator to raise "
            f"{SETTING}.{principal.tenant}.requests_per_minute",
        )
        response.headers["Retry-After"] = str(decision.reset_s)  # ApiAccess adds the key's X-RateLimit-*
        await response(scope, receive, send)
