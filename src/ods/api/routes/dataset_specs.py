"""``/api/v1/dataset-specs``: the dataset-spec editor's routes. Check a YAML spec (each problem with its line,
field and reason), dry-run it on the first rows of its raw table (the prepare stage's own reading, cleaning
and validation: nothing is stored), read one back, and save it under the watched raw prefix, where the
watcher (or the MinIO bridge) sees it arrive and starts prepare-dataset.

A spec saved here lives at ``<raw_prefix><name>.yaml``, so it names its raw table relative to that folder
(``uri: orders.csv``) or by its object URI; the server reads raw tables only from its own object store.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ods.adapters.object_store import ObjectStore
from ods.adapters.tabular.source import read_table
from ods.api.deps import ServerResources, checked
from ods.api.envelope import ConflictError, Envelope, bad_input_response, ok
from ods.api.tenancy import CallerTenant, claim_dataset
from ods.domain.cleaning import apply_cleaning
from ods.domain.dataset_spec import DatasetSpec, DatasetSpecError, parse_dataset_spec
from ods.domain.identity import DEFAULT_TENANT
from ods.domain.tenant_storage import tenant_key_prefix
from ods.errors import NotFoundError, OdsError
from ods.factories import build_object_store
from ods.quality.validation import validate_frame
from ods.settings import Settings

router = APIRouter(prefix="/api/v1/dataset-specs", tags=["datasets"])

MAX_SPEC_CHARS: Final = 64 * 1024
MAX_DRY_RUN_ROWS: Final = 1000
MAX_DRY_RUN_SOURCE_BYTES: Final = 64 * 1024 * 1024
PREVIEW_ROWS: Final = 20
SPEC_FIELD: Final = "body.spec"
_PROBLEM = re.compile(
    r"^\S+ line (?P<line>\d+)(?:, column (?P<column>\d+))?(?:, (?P<field>[^:]+?))?: (?P<reason>.*)$"
)


class SpecText(BaseModel):
    spec: str = Field(description=f"The dataset spec as YAML text (at most {MAX_SPEC_CHARS:,} characters).")


class DryRunRequest(SpecText):
    rows: int = Field(
        default=MAX_DRY_RUN_ROWS,
        ge=1,
        le=MAX_DRY_RUN_ROWS,
        description=f"How many rows of the raw table to clean and validate (at most {MAX_DRY_RUN_ROWS}).",
    )


class SpecProblem(BaseModel):
    line: int | None = Field(description="1-based line of the spec at fault; null when no line is known.")
    column: int | None = Field(default=None, description="1-based column (YAML syntax errors only).")
    field: str | None = Field(description="The field path at fault, e.g. steps[2].coerce.type.")
    reason: str = Field(description="What is wrong and how to fix it.")


class SpecCheck(BaseModel):
    valid: bool
    dataset: str | None = Field(description="The spec's name when it parsed.")
    problems: list[SpecProblem] = Field(description="Every problem found; empty when valid.")


class DryRun(BaseModel):
    dataset: str
    source_uri: str = Field(description="The raw table read (in the server's object store).")
    rows_read: int = Field(description="Rows of the raw table cleaned (its first ones).")
    rows_out: int = Field(description="Rows left after cleaning.")
    cleaning: list[dict[str, Any]] = Field(description="Each cleaning step's report, in order.")
    expectations: list[dict[str, Any]] = Field(description="Each expectation's outcome on the cleaned rows.")
    success: bool = Field(description="Whether every expectation held on these rows.")
    columns: list[str] = Field(description="Columns of the cleaned rows.")
    preview: list[list[Any]] = Field(description=f"The first {PREVIEW_ROWS} cleaned rows.")


class StoredSpec(BaseModel):
    dataset: str
    key: str = Field(description="The spec's key in the object store (under the watched raw prefix).")
    uri: str
    spec: str = Field(description="The spec's YAML text.")
    changed: bool = Field(
        default=False, description="Whether the save wrote new bytes (the same text again writes nothing)."
    )


def spec_problems(error: DatasetSpecError) -> list[SpecProblem]:
    """Each problem of ``error`` split into line, column, field and reason."""
    problems = []
    for text in error.problems:
        found = _PROBLEM.match(" ".join(text.split()))
        if found is None:
            problems.append(SpecProblem(line=None, field=None, reason=text))
            continue
        column = found["column"]
        problems.append(
            SpecProblem(
                line=int(found["line"]),
                column=int(column) if column else None,
                field=found["field"],
                reason=found["reason"],
            )
        )
    return problems


def _parse(text: str) -> DatasetSpec:
    if len(text) > MAX_SPEC_CHARS:
        raise DatasetSpecError(
            f"the spec is {len(text):,} characters; a spec may hold at most {MAX_SPEC_CHARS:,}: "
            "keep long value lists in the raw table"
        )
    return parse_dataset_spec(text, source_name="spec")


def _bad_spec(path: str, error: DatasetSpecError) -> Any:
    message = " ".join(str(error).split())
    return bad_input_response(path, SPEC_FIELD, message)


def spec_key(settings: Settings, name: str, tenant: str = DEFAULT_TENANT) -> str:
    """Where ``tenant``'s spec of dataset ``name`` is saved: ``<raw_prefix><name>.yaml``, where the
    watcher finds it, for the default tenant; under ``tenants/<tenant>/`` for the others (outside the
    watched prefixes, as their documents are: another tenant may name a dataset the same)."""
    return f"{tenant_key_prefix(tenant)}{settings.watch.raw_prefix}{name}.yaml"


def source_key(store: ObjectStore, settings: Settings, uri: str) -> str:
    """The object-store key of a spec's ``source.uri`` as the saved spec would name it: relative to the
    watched raw folder, an ``s3://`` URI of the configured bucket, or a file under the local store's folder.
    Anything else is refused: the server never reads a file of its host for a client."""
    folder = settings.watch.raw_prefix.rstrip("/")
    if "://" not in uri and not Path(uri).is_absolute():
        key = posixpath.normpath(posixpath.join(folder, uri))
        if key == "." or key.startswith("../") or key == "..":
            raise OdsError(f"source.uri {uri!r} points outside the object store (relative to {folder}/)")
    elif uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if store.kind != "minio" or bucket != settings.object_store.bucket or not key:
            raise OdsError(
                f"source.uri {uri!r} is not in the object store ({store.location}); upload the raw table "
                f"there, e.g. beside the spec under {settings.watch.raw_prefix}"
            )
    else:
        root = getattr(store, "root", None)
        path = Path(uri.removeprefix("file://")).resolve()
        if store.kind != "local" or not isinstance(root, Path) or not path.is_relative_to(root.resolve()):
            raise OdsError(
                f"source.uri {uri!r} is not in the object store ({store.location}); upload the raw table "
                f"there, e.g. beside the spec under {settings.watch.raw_prefix}"
            )
        key = path.relative_to(root.resolve()).as_posix()
    if not store.exists(key):
        raise NotFoundError(
            f"source.uri {uri!r}: no object {key!r} in the object store; upload the raw table there first"
        )
    return key


@router.post("/validate", summary="Check a dataset spec", response_model=Envelope[SpecCheck])
def validate_spec(body: SpecText) -> Envelope[SpecCheck]:
    """Parse the YAML spec with the spec model; answers 200 with ``valid`` and each problem's line, field
    and reason (the editor shows them beside the text)."""
    try:
        spec = _parse(body.spec)
    except DatasetSpecError as error:
        return ok(SpecCheck(valid=False, dataset=None, problems=spec_problems(error)))
    return ok(SpecCheck(valid=True, dataset=spec.name, problems=[]))


@router.post("/dry-run", summary="Dry-run a dataset spec on its raw table", response_model=Envelope[DryRun])
async def dry_run_spec(body: DryRunRequest, resources: ServerResources) -> Any:
    """Read the spec's raw table from the object store, clean its first ``rows`` rows with the spec's steps
    and check the expectations on them, as prepare-dataset would; nothing is stored or registered.
    Expectations about the whole table (row counts) are judged on these rows only."""
    return await run_in_threadpool(_dry_run, body, resources.settings)


def _dry_run(body: DryRunRequest, settings: Settings) -> Any:
    path = "/api/v1/dataset-specs/dry-run"
    try:
        spec = _parse(body.spec)
    except DatasetSpecError as error:
        return _bad_spec(path, error)
    store = build_object_store(settings)
    key = source_key(store, settings, spec.source.uri)
    size = store.stat(key).size
    if size > MAX_DRY_RUN_SOURCE_BYTES:
        raise OdsError(
            f"source {key!r} is {size:,} bytes; a dry run reads tables of at most {MAX_DRY_RUN_SOURCE_BYTES:,}"
            " bytes: save the spec and let prepare-dataset run on the whole table"
        )
    frame = read_table(store.get_bytes(key), name=key, source=spec.source).head(body.rows)
    try:
        cleaned = apply_cleaning(frame, spec, pii_salt=settings.privacy.hash_salt.get_secret_value())
        report = validate_frame(cleaned.frame, spec.expectations)
    except DatasetSpecError as error:
        return _bad_spec(path, error)
    head = cleaned.frame.head(PREVIEW_ROWS)
    # pandas' JSON writer turns timestamps, decimals and NaN into what a JSON client reads.
    rows = json.loads(head.to_json(orient="values", date_format="iso")) if len(head) else []
    return ok(
        DryRun(
            dataset=spec.name,
            source_uri=store.uri(key),
            rows_read=cleaned.rows_in,
            rows_out=cleaned.rows_out,
            cleaning=json.loads(json.dumps(cleaned.report_as_dicts(), default=str)),
            expectations=json.loads(json.dumps([o.as_row() for o in report.outcomes], default=str)),
            success=report.success,
            columns=[str(column) for column in cleaned.frame.columns],
            preview=rows,
        )
    )


@router.get("/{name}", summary="Read a saved dataset spec", response_model=Envelope[StoredSpec])
def get_spec(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[StoredSpec]:
    """The spec saved under the watched raw prefix for dataset ``name`` (not one of another tenant's
    datasets: that answers as if none were saved)."""
    checked("dataset", name)
    settings = resources.settings
    store = build_object_store(settings)
    key = spec_key(settings, name, tenant)
    if not store.exists(key):
        raise NotFoundError(
            f"no spec for dataset {name!r} at {key!r}; save one with PUT /api/v1/dataset-specs/{name}"
        )
    text = store.get_bytes(key).decode("utf-8", errors="replace")
    return ok(StoredSpec(dataset=name, key=key, uri=store.uri(key), spec=text))


@router.put(
    "/{name}",
    summary="Save a dataset spec where the watcher prepares it",
    response_model=Envelope[StoredSpec],
)
def save_spec(name: str, body: SpecText, resources: ServerResources, tenant: CallerTenant) -> Any:
    """Check the spec and that its raw table is in the object store, then write it to
    ``<raw_prefix><name>.yaml``: the watcher sees it arrive and starts prepare-dataset. Saving the same
    text again writes nothing (so starts nothing)."""
    checked("dataset", name)
    path = f"/api/v1/dataset-specs/{name}"
    try:
        spec = _parse(body.spec)
    except DatasetSpecError as error:
        return _bad_spec(path, error)
    if spec.name != name:
        message = f"the spec's name is {spec.name!r} but it is saved as {name!r}; make them the same"
        return bad_input_response(path, "body.spec.name", message)
    settings = resources.settings
    store = build_object_store(settings)
    source_key(store, settings, spec.source.uri)
    dataset = claim_dataset(resources.catalog, name, tenant)  # prepared as this tenant's, like a registration
    if dataset.archived_at is not None:
        raise ConflictError(
            f"dataset {name!r} is archived; restore it with POST /api/v1/datasets/{name}/restore first"
        )
    key = spec_key(settings, name, tenant)
    data = body.spec.encode("utf-8")
    changed = not store.exists(key) or store.get_bytes(key) != data
    if changed:
        store.put_bytes(key, data, content_type="application/yaml")
    return ok(StoredSpec(dataset=name, key=key, uri=store.uri(key), spec=body.spec, changed=changed))
