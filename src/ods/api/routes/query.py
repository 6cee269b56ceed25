"""``/api/v1/query``: SQL over the registered datasets through the Text-to-SQL guard, read-only
(integration point 3, query side). The same guard and warehouse `ods ask` uses: one SELECT, allowlisted
functions and tables, a row cap, a time limit, memory and result-size limits, in a process of its own,
kept by the server's resources between requests."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ods.api.audit import note_sql
from ods.api.deps import ServerResources
from ods.api.envelope import Envelope, ok
from ods.api.tenancy import CallerTenant, tenant_dataset_refs
from ods.api.webhooks import record_query_completed
from ods.domain.sql_guard import SqlRejected

router = APIRouter(prefix="/api/v1/query", tags=["query"])


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=20_000, description="One SELECT over the datasets' tables.")
    datasets: list[str] | None = Field(
        default=None,
        max_length=50,
        description="Datasets to query as tables, NAME or NAME@VERSION; unset: the newest registered "
        "version of every dataset.",
    )
    max_rows: int | None = Field(
        default=None, ge=1, le=100_000, description="Row cap (never above ODS_WAREHOUSE__MAX_ROWS)."
    )


class Validation(BaseModel):
    allowed: bool = Field(description="Whether the guard accepts the statement.")
    sql: str | None = Field(description="The statement as it would run (with the row cap), when allowed.")
    tables: list[str] = Field(description="The tables it reads, when allowed.")
    reason: str | None = Field(description="Why the guard refused it, when refused.")


class QueryResult(BaseModel):
    sql: str = Field(description="The statement that ran (with the row cap).")
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="True when the row cap cut the result.")
    seconds: float


def _max_rows(resources: ServerResources, request: QueryRequest) -> int:
    ceiling = resources.settings.warehouse.max_rows
    return min(request.max_rows or ceiling, ceiling)


@router.post(
    "/validate", summary="Check SQL with the guard, running nothing", response_model=Envelope[Validation]
)
def validate(request: QueryRequest, resources: ServerResources, tenant: CallerTenant) -> Envelope[Validation]:
    """The statement as the guard would run it, or the reason it refuses it (HTTP 200 either way)."""
    refs = tenant_dataset_refs(resources.catalog, request.datasets, tenant)
    with resources.warehouse(refs, tenant) as warehouse:
        try:
            guarded = warehouse.guard(request.sql, max_rows=_max_rows(resources, request))
        except SqlRejected as rejected:
            return ok(Validation(allowed=False, sql=None, tables=[], reason=str(rejected)))
    return ok(Validation(allowed=True, sql=guarded.sql, tables=sorted(guarded.tables), reason=None))


@router.post("/execute", summary="Run guarded, read-only SQL", response_model=Envelope[QueryResult])
def execute(
    request: QueryRequest, resources: ServerResources, http: Request, tenant: CallerTenant
) -> Envelope[QueryResult]:
    """Rows of the statement, run read-only with the warehouse's limits; a statement the guard refuses is
    40001 with the reason and is never run."""
    note_sql(http, request.sql)  # the audit row keeps the statement asked for, run or refused
    refs = tenant_dataset_refs(resources.catalog, request.datasets, tenant)
    with resources.warehouse(refs, tenant) as warehouse:
        guarded = warehouse.guard(request.sql, max_rows=_max_rows(resources, request))
        result = warehouse.run(guarded, timeout_s=resources.settings.warehouse.timeout_s)
    record_query_completed(
        resources.catalog.for_tenant(tenant), sql=result.sql, datasets=request.datasets, row_count=result.row_count,
        truncated=result.truncated, seconds=result.seconds, tenant=tenant,
    )  # fmt: skip
    return ok(
        QueryResult(
            sql=result.sql,
            columns=list(result.columns),
            rows=[list(row) for row in result.rows],
            row_count=result.row_count,
            truncated=result.truncated,
            seconds=result.seconds,
        )
    )
