"""Per-tenant quotas of `ods serve` (``ODS_QUOTAS__*``): storage bytes, documents and requests per
minute, one default for every tenant and overrides per tenant; importable from ``ods.settings``.

``None`` is unlimited, the local default. An override names only what it changes:
``ODS_QUOTAS__TENANTS='{"acme": {"storage_bytes": 5000000000}}'`` (or
``ODS_QUOTAS__TENANTS__ACME__STORAGE_BYTES=5000000000``) limits acme's storage and keeps the default's
documents and request limits; an override may also set a field back to ``null`` (unlimited).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from ods.domain.identity import check_tenant


class TenantQuota(BaseModel):
    """What one tenant may hold and send; ``None``: no limit."""

    storage_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes of documents uploaded to the tenant's knowledge bases plus the Parquet files of "
        "its dataset versions; an upload or a dataset registration that would pass it is refused (40901).",
    )
    documents: int | None = Field(
        default=None,
        ge=0,
        description="Documents (not deleted) across the tenant's knowledge bases; an upload of a new "
        "document past it is refused (40901).",
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Requests per minute all of the tenant's callers together may make to /api/v1 and /v1 "
        "(on top of each key's own ODS_API__RATE_LIMIT_*); past it: 429 with Retry-After.",
    )


class QuotaSettings(BaseModel):
    """The quotas of every tenant: ``default`` unless ``tenants`` names the tenant."""

    default: TenantQuota = Field(default_factory=TenantQuota, description="Every tenant's quota.")
    tenants: dict[str, TenantQuota] = Field(
        default_factory=dict,
        description="Tenant -> the fields of its quota that differ from the default.",
    )
    usage_cache_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Seconds a tenant's computed storage and document usage is reused before it is read "
        "from the catalog and the object store again (what this server admits meanwhile is added to it).",
    )

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: dict[str, TenantQuota]) -> dict[str, TenantQuota]:
        for tenant in value:
            check_tenant(tenant)
        return value

    def for_tenant(self, tenant: str) -> TenantQuota:
        """``tenant``'s quota: the default with the fields its override sets."""
        override = self.tenants.get(tenant)
        if override is None:
            return self.default
        changed = {name: getattr(override, name) for name in override.model_fields_set}
        return self.default.model_copy(update=changed)
