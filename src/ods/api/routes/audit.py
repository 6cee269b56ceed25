"""``/api/v1/audit``: the audit log, for administrators (docs/security.md, "Audit")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ods.adapters.catalog.audit import AuditFilter
from ods.api.audit import AuditWriter
from ods.api.deps import ServerResources
from ods.api.envelope import Envelope, ok
from ods.domain.identity import Principal
from ods.stages.audit import MAX_PAGE, list_audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

ALL_TENANTS = frozenset({"super_admin", "platform_admin"})
"""Roles that read every tenant's rows; a tenant_admin reads its own tenant's only."""


class AuditRow(BaseModel):
    """One audit row: who did what to which resource, when, and how it ended."""

    id: int
    at: datetime
    tenant: str | None = Field(
        description="The caller's tenant; null for a request refused before it was known."
    )
    subject: str | None = Field(
        description="The caller: a token's subject, an API key's name, local@<address>."
    )
    roles: list[str]
    action: str = Field(
        description="The route's permission (datasets.create, query.execute, chat.ask, …), auth.login for a "
        "caller's first request in ODS_AUDIT__LOGIN_INTERVAL_S, http.<method> where no route matched."
    )
    resource: str = Field(description="The route template with its path parameters filled in.")
    outcome: Literal["allowed", "refused", "failed"]
    status_code: int | None
    request_id: str | None
    client: str | None = Field(description="The client's address.")
    detail: str | None = Field(
        description="A refusal's reason; the SQL that ran; a question's text or SHA-256 (ODS_AUDIT__QUESTIONS)."
    )


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    entries: list[AuditRow]
    offset: int
    limit: int
    next_offset: int | None = Field(description="The offset of the next page; null on the last one.")


@router.get("", summary="The audit log, newest first", response_model=Envelope[AuditPage])
async def list_audit_log(
    request: Request,
    resources: ServerResources,
    since: Annotated[datetime | None, Query(description="Rows at or after this time (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Rows before this time (ISO 8601).")] = None,
    subject: Annotated[str | None, Query(max_length=200, description="Only this caller's rows.")] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="Only this action, e.g. query.execute.")
    ] = None,
    outcome: Annotated[
        Literal["allowed", "refused", "failed"] | None, Query(description="Only this outcome.")
    ] = None,
    resource: Annotated[
        str | None,
        Query(max_length=500, description="Only resources starting with this, e.g. /api/v1/datasets."),
    ] = None,
    tenant: Annotated[
        str | None, Query(max_length=63, description="Only this tenant (a tenant_admin always sees its own).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")] = 50,
    offset: Annotated[int, Query(ge=0, description="Rows to skip (the previous page's next_offset).")] = 0,
) -> Envelope[AuditPage]:
    """Rows of the audit log the filters select, newest first, one page at a time. super_admin and
    platform_admin read every tenant; a tenant_admin reads its own tenant's rows only. The rows of
    requests answered before this one are all there (queued rows are written first)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None and not (principal.roles & ALL_TENANTS):
        tenant = principal.tenant
    writer: AuditWriter = request.app.state.audit
    await run_in_threadpool(writer.flush)
    where = AuditFilter(
        since=since,
        until=until,
        tenant=tenant,
        subject=subject,
        action=action,
        outcome=outcome,
        resource=resource,
    )
    page = await run_in_threadpool(list_audit, resources.catalog, where, limit=limit, offset=offset)
    return ok(
        AuditPage(
            entries=[AuditRow.model_validate(entry, from_attributes=True) for entry in page.entries],
            offset=offset,
            limit=limit,
            next_offset=page.next_offset,
        )
    )
