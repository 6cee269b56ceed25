"""``/api/v1/datasets``: registered datasets, their versions with schema, profile, validation and lineage,
and a paged preview of a version's rows (integration point 1, read side); registering a version from a
spec, describing, tagging, archiving and restoring a dataset, and short-lived read access to a version's
Parquet (the write side).

A registration runs the prepare-dataset flow's stages in the server's background (``ods.api.background``),
or starts the prepare-dataset deployment when runs go to Prefect (``ODS_API__RUNS``), and answers 202 with
the run to poll. Versions are immutable and archiving keeps every version and its
bytes: nothing here ever deletes data.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from ods.adapters.catalog.datasets import TAG_RULE, check_tags
from ods.adapters.catalog.records import DatasetRecord, DatasetVersionRecord, ValidationRunRecord
from ods.adapters.object_store import ObjectStore, key_of
from ods.api.background import BackgroundRuns, DeploymentCall, ServerRuns
from ods.api.deps import ServerResources, checked
from ods.api.downloads import DOWNLOADS_PREFIX, ServerSigner
from ods.api.envelope import ConflictError, Envelope, ErrorEnvelope, bad_input_response, ok
from ods.api.quotas import ServerQuotas, TenantQuotas
from ods.api.resources import Resources
from ods.api.routes.runs import Run, run_view
from ods.api.run_events import RunEventEmitter, dataset_event, emit_quietly
from ods.api.tenancy import (
    CallerSubject,
    CallerTenant,
    claim_dataset,
    owned_dataset,
    owned_dataset_version,
)
from ods.api.views import view_of
from ods.domain.dataset_spec import DatasetSpecError
from ods.domain.hashing import sha256_bytes
from ods.domain.tenant_storage import dataset_spec_key
from ods.errors import NotFoundError, OdsError
from ods.factories import build_object_store
from ods.stages.prepare import (
    DatasetVersionSummary,
    LoadedSpec,
    card_uri,
    prepare_version,
    read_rows,
    spec_from_text,
)

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

MAX_PAGE_SIZE = 200
MAX_ROWS_PER_PAGE = 1000


class DatasetInfo(BaseModel):
    name: str
    description: str | None
    tags: list[str] = Field(description="Short labels, sorted.")
    archived_at: datetime | None = Field(description="When it was archived; null while it is live.")
    latest_version: int | None = Field(description="Newest registered version; null when none passed.")
    version_count: int
    created_at: datetime
    owner: str | None = Field(
        default=None,
        description="The subject (token sub or API key name; ODS_OWNER for the CLI and flows) that created "
        "it; null when made before owners were recorded: then only data_admin (not data_engineer) may edit "
        "or archive it.",
    )


class DatasetSummary(DatasetInfo):
    latest_status: Literal["registered", "rejected"] | None = Field(
        description="Status of the newest version, registered or rejected."
    )


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
    tags: list[str] = Field(description="Short labels, sorted.")
    archived_at: datetime | None = Field(description="When it was archived; null while it is live.")
    owner: str | None = Field(default=None, description="Who created it (see DatasetInfo.owner).")
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
    tenant: CallerTenant,
    status: Annotated[
        Literal["registered", "rejected"] | None,
        Query(description="Only datasets whose newest version has this status."),
    ] = None,
    tags: Annotated[
        str | None, Query(description="Comma-separated tags: only datasets carrying every one of them.")
    ] = None,
    include_archived: Annotated[bool, Query(description="List archived datasets too.")] = False,
    page: Annotated[int, Query(ge=1, description="Page number, from 1.")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Datasets per page.")] = 20,
) -> Envelope[DatasetPage]:
    """Datasets by name with their newest version, filtered by the newest version's status and by tags,
    paged; archived datasets only with ``include_archived=true``."""
    catalog = resources.catalog.for_tenant(tenant)
    wanted = [tag.strip() for tag in (tags or "").split(",") if tag.strip()]
    summaries = []
    for dataset in catalog.list_datasets(tags=wanted, include_archived=include_archived, tenant=tenant):
        versions = catalog.list_dataset_versions(dataset.name)
        newest = max(versions, key=lambda version: version.version, default=None)
        latest_status = newest.status if newest is not None else None
        if status is not None and latest_status != status:
            continue
        summaries.append(view_of(DatasetSummary, dataset, latest_status=latest_status))
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
    tenant: CallerTenant,
    offset: Annotated[int, Query(ge=0, description="First row, from 0.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS_PER_PAGE, description="Rows in the page.")] = 100,
) -> Envelope[RowsPage]:
    """Rows ``offset`` to ``offset + limit`` of one version, read from its Parquet (only the row groups
    that hold them)."""
    checked("dataset", name)
    record = owned_dataset_version(resources.catalog.for_tenant(tenant), name, version, tenant)
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


# -- writes ----------------------------------------------------------------------------------------------

MAX_DESCRIPTION_CHARS = 2000
MAX_CREDENTIAL_SECONDS = 3600
SPEC_FIELD = "body.spec"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_ARCHIVED = "The dataset is archived: restore it first (code 40901)."


class RegisterDataset(BaseModel):
    spec: str | dict[str, Any] = Field(
        description="The dataset spec `ods datasets prepare` reads: YAML or JSON text, or a JSON object "
        "(name, source, columns, steps, expectations)."
    )
    source_uri: str | None = Field(
        default=None,
        description="The raw table, in the object store: s3://bucket/key (MinIO) or a file under the local "
        "store's folder. Defaults to the spec's source.uri, which must then name it the same way.",
    )


class RegisteredDataset(BaseModel):
    dataset: str = Field(description="The spec's name: the dataset the version is added to.")
    source_uri: str = Field(description="The raw table the run reads.")
    run: Run = Field(description="The prepare run: poll GET /api/v1/runs/{run.id} for the version.")


class UpdateDataset(BaseModel):
    description: str | None = Field(
        default=None,
        max_length=MAX_DESCRIPTION_CHARS,
        description="What the dataset holds, for people; '' or null clears it, absent keeps it.",
    )
    tags: list[str] | None = Field(
        default=None, description=f"The dataset's tags, replacing its current ones: {TAG_RULE}; at most 20."
    )

    @field_validator("tags")
    @classmethod
    def _tags_follow_the_rule(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(check_tags(value))


class CredentialsRequest(BaseModel):
    version: int = Field(ge=1, description="The registered version to read.")
    expires_in: int = Field(
        default=900,
        ge=1,
        le=MAX_CREDENTIAL_SECONDS,
        description=f"Seconds the URL stays good (at most {MAX_CREDENTIAL_SECONDS}).",
    )


class Credentials(BaseModel):
    dataset: str
    version: int
    method: Literal["GET"] = Field(default="GET", description="The HTTP method the URL is for.")
    url: str = Field(
        description="Read the version's Parquet here, without an API key, until expires_at: a presigned "
        "MinIO/S3 URL, or this server's /api/v1/downloads/{token} on a local store."
    )
    kind: Literal["presigned-s3", "signed-download"] = Field(
        description="presigned-s3: the object store signed it; signed-download: this server did."
    )
    expires_at: datetime
    size_bytes: int
    content_hash: str = Field(description="sha256 of the Parquet bytes, to check the download.")


def _info(record: DatasetRecord) -> DatasetInfo:
    return DatasetInfo.model_validate(record, from_attributes=True)


def _spec_text(spec: str | dict[str, Any]) -> str:
    return spec if isinstance(spec, str) else json.dumps(spec, ensure_ascii=False, indent=1)


def _store_source(store: ObjectStore, bucket: str, uri: str) -> str:
    """``uri`` when it names an object of the configured store that exists; else an error saying where
    raw tables must be. The server reads nothing else: a client never makes it read a file of its host."""
    if uri.startswith("s3://"):
        given_bucket, _, key = uri.removeprefix("s3://").partition("/")
        if store.kind == "minio" and given_bucket == bucket and key:
            if not store.exists(key):
                raise NotFoundError(f"no object {uri!r}: upload the raw table there first")
            return uri
    elif store.kind == "local":
        root = getattr(store, "root", None)
        path = Path(uri.removeprefix("file://"))
        if isinstance(root, Path) and path.is_absolute() and path.resolve().is_relative_to(root.resolve()):
            if not path.resolve().is_file():
                raise NotFoundError(f"no file {uri!r} in the object store: put the raw table there first")
            return uri
    raise OdsError(
        f"source {uri!r} is not in the object store ({store.location}); the server reads raw tables only "
        "from there: upload the table and name it by its URI"
    )


@router.post(
    "",
    summary="Register a dataset version from a spec",
    status_code=202,
    response_model=Envelope[RegisteredDataset],
    responses={409: {"model": ErrorEnvelope, "description": _ARCHIVED}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": RegisterDataset.model_json_schema()},
                "application/yaml": {
                    "schema": {"type": "string", "description": "The spec itself; source_uri as a query."}
                },
            },
            "required": True,
        }
    },
)
async def register_dataset(
    request: Request,
    resources: ServerResources,
    runs: ServerRuns,
    tenant: CallerTenant,
    owner: CallerSubject,
    quotas: ServerQuotas,
    source_uri: Annotated[
        str | None, Query(description="The raw table, when the body is the YAML spec itself.")
    ] = None,
) -> Any:
    """Check the spec and the raw table's URI, then prepare the version in the background as
    `ods datasets prepare` does (clean, profile, validate, register or quarantine); answers 202 with the
    run to poll. The same table and spec again find the version made before."""
    body = await request.body()
    yaml_body = request.headers.get("content-type", "").split(";")[0].strip().lower() in YAML_TYPES
    return await run_in_threadpool(
        _register, body, yaml_body, source_uri, resources, runs, tenant, owner, quotas
    )


def _register(
    body: bytes,
    yaml_body: bool,
    source_uri: str | None,
    resources: Resources,
    runs: BackgroundRuns,
    tenant: str,
    owner: str | None,
    quotas: TenantQuotas,
) -> Any:
    """The registration's checks and its run (in a worker thread: it reads the catalog and the store)."""
    path = "/api/v1/datasets"
    if yaml_body:
        text, source = body.decode("utf-8", errors="replace"), source_uri
    else:
        try:
            parsed = RegisterDataset.model_validate_json(body or b"null")
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            field = ".".join(["body", *(str(part) for part in first["loc"])])
            message = f"invalid request: {field}: {first['msg']}"
            return bad_input_response(path, field, message, reason=first["msg"])
        text, source = _spec_text(parsed.spec), parsed.source_uri or source_uri
    try:
        loaded = spec_from_text(text, "spec")
    except DatasetSpecError as error:
        return bad_input_response(path, SPEC_FIELD, " ".join(str(error).split()))
    settings = resources.settings
    store = build_object_store(settings)
    name = loaded.spec.name
    try:
        existing: DatasetRecord | None = resources.catalog.for_tenant(tenant).get_dataset(name)
    except NotFoundError:
        existing = None
    if existing is not None and existing.archived_at is not None:
        raise ConflictError(
            f"dataset {name!r} is archived; restore it with POST /api/v1/datasets/{name}/restore first"
        )
    source = _store_source(store, settings.object_store.bucket, source or loaded.spec.source.uri)
    quotas.check_storage(tenant, f"registering a version of dataset {name!r}")
    claim_dataset(resources.catalog, name, tenant, owner)  # the run registers its version as this tenant's
    run = runs.submit(
        "prepare",
        name,
        lambda: _prepare(resources, runs.emit, store, loaded, source, tenant),
        f"register {name}",
        DeploymentCall(
            "prepare-dataset/prepare-dataset",
            lambda: {"spec": _store_spec(store, name, tenant, text), "source": source},
            f"prepare-{name}",
        ),
        tenant=tenant,
    )
    return ok(RegisteredDataset(dataset=name, source_uri=source, run=run_view(run)))


def _prepare(
    resources: Resources,
    emit: RunEventEmitter,
    store: ObjectStore,
    loaded: LoadedSpec,
    source: str,
    tenant: str,
) -> DatasetVersionSummary:
    """The prepare-dataset flow's stages, then the ods.dataset.registered|rejected event its task emits."""
    catalog = resources.catalog.for_tenant(tenant)
    summary = prepare_version(catalog, store, resources.settings, loaded, source)
    emit_quietly(emit, dataset_event(catalog, summary, loaded.spec.train))
    return summary


def _store_spec(store: ObjectStore, name: str, tenant: str, text: str) -> str:
    """Store the spec where the prepare-dataset deployment's worker reads it (keyed by its content, under
    the tenant's prefix and outside the watched prefixes so no watcher starts a second run for it);
    returns its URI."""
    key = dataset_spec_key(name, tenant, sha256_bytes(text.encode())[:16])
    store.put_bytes(key, text.encode())
    return store.uri(key)


@router.put("/{name}", summary="Describe and tag a dataset", response_model=Envelope[DatasetInfo])
def update_dataset(
    name: str, resources: ServerResources, tenant: CallerTenant, request: Annotated[UpdateDataset, Body()]
) -> Envelope[DatasetInfo]:
    """Replace the description and/or the tags (fields left out stay as they are). Versions never change."""
    checked("dataset", name)
    owned_dataset(resources.catalog.for_tenant(tenant), name, tenant)
    given = request.model_fields_set
    description = request.description if "description" in given else None
    record = resources.catalog.for_tenant(tenant).update_dataset(
        name,
        description=description or None,
        tags=request.tags,
        clear_description="description" in given and not request.description,
    )
    return ok(_info(record))


@router.delete("/{name}", summary="Archive a dataset", response_model=Envelope[DatasetInfo])
def archive_dataset(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[DatasetInfo]:
    """Hide the dataset from lists (``include_archived=true`` shows it). Every version and its bytes stay;
    ``POST /api/v1/datasets/{name}/restore`` brings it back. Archiving twice changes nothing."""
    checked("dataset", name)
    owned_dataset(resources.catalog.for_tenant(tenant), name, tenant)
    return ok(_info(resources.catalog.for_tenant(tenant).archive_dataset(name)))


@router.post("/{name}/restore", summary="Restore an archived dataset", response_model=Envelope[DatasetInfo])
def restore_dataset(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[DatasetInfo]:
    """Show an archived dataset in lists again; restoring a live one changes nothing."""
    checked("dataset", name)
    owned_dataset(resources.catalog.for_tenant(tenant), name, tenant)
    return ok(_info(resources.catalog.for_tenant(tenant).restore_dataset(name)))


@router.post(
    "/{name}/credentials",
    summary="Short-lived read access to a version's Parquet",
    response_model=Envelope[Credentials],
    responses={409: {"model": ErrorEnvelope, "description": "The version was rejected (code 40901)."}},
)
def create_credentials(
    name: str,
    credentials: CredentialsRequest,
    request: Request,
    resources: ServerResources,
    signer: ServerSigner,
    tenant: CallerTenant,
) -> Envelope[Credentials]:
    """A URL that reads the version's Parquet without an API key until it expires: presigned by MinIO/S3,
    or signed by this server (HMAC-SHA256) on a local store. Only registered versions."""
    checked("dataset", name)
    record = owned_dataset_version(resources.catalog.for_tenant(tenant), name, credentials.version, tenant)
    if record.status != "registered":
        raise ConflictError(
            f"version {record.version} of dataset {name!r} was rejected ({record.reason}); its Parquet holds "
            "the quarantined rows, which are read with ods datasets show, not shared"
        )
    store = build_object_store(resources.settings)
    key = key_of(store, record.uri)
    expires_at = int(time.time()) + credentials.expires_in
    if store.kind == "minio":
        url = store.presigned_url(key, expires=timedelta(seconds=credentials.expires_in))
        kind: Literal["presigned-s3", "signed-download"] = "presigned-s3"
    else:
        url = str(request.base_url).rstrip("/") + DOWNLOADS_PREFIX + signer.sign(key, expires_at)
        kind = "signed-download"
    return ok(
        Credentials(
            dataset=name,
            version=record.version,
            url=url,
            kind=kind,
            expires_at=datetime.fromtimestamp(expires_at, UTC),
            size_bytes=record.size_bytes,
            content_hash=record.content_hash,
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
def get_dataset(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[DatasetDetail]:
    """Every version of a dataset with its schema, profile, validation runs and lineage; 40401 if unknown."""
    checked("dataset", name)
    catalog = resources.catalog.for_tenant(tenant)
    described = owned_dataset(catalog, name, tenant)
    versions = sorted(catalog.list_dataset_versions(name), key=lambda version: -version.version)
    store = build_object_store(resources.settings)
    return ok(
        view_of(
            DatasetDetail,
            described,
            name=name,
            versions=[
                _version(record, catalog.validation_runs(record.id), card_uri(store, record, tenant))
                for record in versions
            ],
        )
    )


def _version(
    record: DatasetVersionRecord, runs: list[ValidationRunRecord], card: str | None
) -> DatasetVersion:
    return view_of(
        DatasetVersion,
        record,
        data_schema=record.schema,
        lineage=view_of(DatasetLineage, record, parent_version_ids=record.parent_ids),
        validation_runs=[ValidationRun.model_validate(run, from_attributes=True) for run in runs],
        card_uri=card,
    )
