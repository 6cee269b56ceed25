"""``/api/v1/tenants/current``: the caller's tenant, what it holds and its quotas (``ODS_QUOTAS__*``)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ods.api.envelope import Envelope, ok
from ods.api.quotas import ServerQuotas
from ods.api.tenancy import CallerTenant

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"])


class Usage(BaseModel):
    storage_bytes: int = Field(description="Documents plus dataset Parquet files, in bytes.")
    document_bytes: int = Field(description="Documents uploaded to the tenant's knowledge bases.")
    dataset_bytes: int = Field(description="Parquet files of every version of the tenant's datasets.")
    documents: int = Field(description="Documents across the tenant's knowledge bases (not deleted).")


class Quota(BaseModel):
    storage_bytes: int | None = Field(description="null: unlimited.")
    documents: int | None = Field(description="null: unlimited.")
    requests_per_minute: int | None = Field(
        description="All of the tenant's callers together; null: unlimited."
    )


class TenantStatus(BaseModel):
    tenant: str
    usage: Usage = Field(description="Measured at most ODS_QUOTAS__USAGE_CACHE_S seconds ago.")
    quota: Quota


@router.get(
    "/current", summary="The caller's tenant: usage against quota", response_model=Envelope[TenantStatus]
)
async def current_tenant(tenant: CallerTenant, quotas: ServerQuotas) -> Envelope[TenantStatus]:
    """What the caller's tenant holds (storage bytes, documents) against its quotas; an upload or a
    dataset registration past a quota is refused with 409 (code 40901), a request past the tenant's
    requests per minute with 429 (code 42901)."""
    usage = await run_in_threadpool(quotas.usage, tenant)
    quota = quotas.quota(tenant)
    return ok(
        TenantStatus(
            tenant=tenant,
            usage=Usage(
                storage_bytes=usage.storage_bytes,
                document_bytes=usage.document_bytes,
                dataset_bytes=usage.dataset_bytes,
                documents=usage.documents,
            ),
            quota=Quota(**quota.model_dump()),
        )
    )
