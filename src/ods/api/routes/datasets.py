"""``/api/v1/datasets``: registered datasets, their versions with schema, profile, validation and lineage,
and a paged preview of a version's rows (integration point 1, read side)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ods.adapters.catalog.records import DatasetVersionRecord, ValidationRunRecord
from ods.api.deps import ServerResources, checked
from ods.api.envelope import Envelope, ok
from ods.factories import build_object_store
from ods.stages.prepare import card_uri, read_rows

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

MAX_PAGE_SIZE = 200
MAX_ROWS_PER_PAGE = 1000


class DatasetSummary(BaseModel):
    name: str
    description: str | None
    latest_version: int | None = Field(description="Newest registered version; null when none passed.")
    version_count: int
    latest_status: Literal["registered", "rejected"] | None = Field(
        description="Status of the newest version, registered or rejected."
    )
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetSummary]
    page: int
    page_size: int
    total: int = Field(description="Datasets matching the filters, on every page.")
    pages: int


class ValidationRun(BaseModel):
    id: int
    success: bool
    results: dict[str, Any] = Field(description="Each expectation with its column, outcome and details.")
    quarantine_uri: str | None = Field(description="Where the failing rows were kept, when any were.")
    created_at: datetime


class DatasetLineage(BaseModel):
    source_uri: str | None
    source_etag: str | None
    source_sha256: str | None
    spec_hash: str | None
    flow_run_id: str | None
    parent_version_ids: list[int] = Field(description="Catalog ids of the versions this one derives from.")


class DatasetVersion(BaseModel):
    id: int
    version: int
    status: Literal["registered", "rejected"]
    reason: str | None = Field(description="Why a rejected version was rejected.")
    uri: str = Field(description="Where the version's Parquet is stored.")
    content_hash: str
    row_count: int
    size_bytes: int
    data_schema: dict[str, Any] = Field(
        serialization_alias="schema", description="Columns with their Arrow types."
    )
    profile: dict[str, Any] = Field(description="Per column: type, nulls, distinct values, range, PII kind.")
    lineage: DatasetLineage
    validation_runs: list[ValidationRun]
    card_uri: str | None = Field(
        description="The dataset card (markdown) kept beside the data, when written."
    )
    created_at: datetime


class DatasetDetail(BaseModel):
    name: str
    description: str | None
    versions: list[DatasetVersion] = Field(description="Every version, newest first.")


class RowsPage(BaseModel):
    dataset: str
    version: int
    columns: list[str]
    rows: list[list[Any]] = Field(description="Values as JSON: numbers, text, booleans, ISO dates, null.")
    offset: int
    limit: int
    total_rows: int = Field(description="Rows the version holds.")


@router.get("", summary="List datasets", response_model=Envelope[DatasetPage], response_model_by_alias=True)
def list_datasets(
    resources: ServerResources,
    status: Annotated[
        Literal["registered", "rejected"] | None,
        Query(description="Only datasets whose newest version has this status."),
    ] = None,
    page: Annotated[int, Query(ge=1, description="Page number, from 1.")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Datasets per page.")] = 20,
) -> Envelope[DatasetPage]:
    """Datasets by name with their newest version, filtered by the newest version's status, paged."""
    catalog = resources.catalog
    summaries = []
    for dataset in catalog.list_datasets():
        versions = catalog.list_dataset_versions(dataset.name)
        newest = max(versions, key=lambda version: version.version, default=None)
        latest_status = newest.status if newest is not None else None
        if status is not None and latest_status != status:
            continue
        summaries.append(
            DatasetSummary(
                name=dataset.name,
                description=dataset.description,
                latest_version=dataset.latest_version,
                version_count=dataset.version_count,
                latest_status=latest_status,
                created_at=dataset.created_at,
            )
        )
    start = (page - 1) * page_size
    return ok(
        DatasetPage(
            items=summaries[start : start + page_size],
            page=page,
            page_size=page_size,
            total=len(summaries),
            pages=math.ceil(len(summaries) / page_size),
        )
    )


@router.get(
    "/{name}/versions/{version}/rows",
    summary="A page of a version's rows",
    response_model=Envelope[RowsPage],
)
def get_rows(
    name: str,
    version: int,
    resources: ServerResources,
    offset: Annotated[int, Query(ge=0, description="First row, from 0.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS_PER_PAGE, description="Rows in the page.")] = 100,
) -> Envelope[RowsPage]:
    """Rows ``offset`` to ``offset + limit`` of one version, read from its Parquet (only the row groups
    that hold them)."""
    checked("dataset", name)
    record = resources.catalog.get_dataset_version(name, version)
    frame = read_rows(build_object_store(resources.settings), record.uri, offset, limit)
    # pandas' JSON writer turns timestamps, decimals and NaN into what a JSON client reads.
    rows = json.loads(frame.to_json(orient="values", date_format="iso")) if len(frame) else []
    return ok(
        RowsPage(
            dataset=name,
            version=record.version,
            columns=[str(column) for column in frame.columns],
            rows=rows,
            offset=offset,
            limit=limit,
            total_rows=record.row_count,
        )
    )


# A name holding '/' (../etc) reaches the same check instead of matching no route.
@router.get("/{name:path}", include_in_schema=False)
@router.get(
    "/{name}",
    summary="A dataset with every version",
    response_model=Envelope[DatasetDetail],
    response_model_by_alias=True,
)
def get_dataset(name: str, resources: ServerResources) -> Envelope[DatasetDetail]:
    """Every version of a dataset with its schema, profile, validation runs and lineage; 40401 if unknown."""
    checked("dataset", name)
    catalog = resources.catalog
    versions = sorted(catalog.list_dataset_versions(name), key=lambda version: -version.version)
    described = next((dataset for dataset in catalog.list_datasets() if dataset.name == name), None)
    store = build_object_store(resources.settings)
    return ok(
        DatasetDetail(
            name=name,
            description=described.description if described else None,
            versions=[
                _version(record, catalog.validation_runs(record.id), card_uri(store, record))
                for record in versions
            ],
        )
    )


def _version(
    record: DatasetVersionRecord, runs: list[ValidationRunRecord], card: str | None
) -> DatasetVersion:
    return DatasetVersion(
        id=record.id,
        version=record.version,
        status=record.status,
        reason=record.reason,
        uri=record.uri,
        content_hash=record.content_hash,
        row_count=record.row_count,
        size_bytes=record.size_bytes,
        data_schema=record.schema,
        profile=record.profile,
        lineage=DatasetLineage(
            source_uri=record.source_uri,
            source_etag=record.source_etag,
            source_sha256=record.source_sha256,
            spec_hash=record.spec_hash,
            flow_run_id=record.flow_run_id,
            parent_version_ids=list(record.parent_ids),
        ),
        validation_runs=[
            ValidationRun(
                id=run.id,
                success=run.success,
                results=run.results,
                quarantine_uri=run.quarantine_uri,
                created_at=run.created_at,
            )
            for run in runs
        ],
        card_uri=card,
        created_at=record.created_at,
    )
