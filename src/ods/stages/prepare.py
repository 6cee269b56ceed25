"""The stages of preparing a dataset version: load spec, fetch source, clean, validate, write, register.

Each function is one stage that a Prefect task wraps (``tasks/datasets.py``); they hold the logic so the
same code runs from a flow, a test or a script. Identities come from content: a version is found again
by (source sha256, spec hash) before any work, and its Parquet lives at a key derived from its bytes, so
re-running on the same input writes nothing new and a crash between "Parquet written" and "catalog row
committed" is adopted by the next run (same key, same bytes).
"""

from __future__ import annotations

import io
import posixpath
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from ods.adapters.catalog import DatasetCatalog, WebhookCatalog
from ods.adapters.catalog.records import DatasetVersionRecord
from ods.adapters.object_store import ObjectStore, key_of
from ods.adapters.tabular.source import read_table
from ods.domain.cleaning import apply_cleaning
from ods.domain.copied_fields import copy_fields
from ods.domain.dataset_card import render_dataset_card
from ods.domain.dataset_spec import DatasetSpec, parse_dataset_spec
from ods.domain.hashing import sha256_bytes, stable_id
from ods.domain.identity import DEFAULT_TENANT
from ods.domain.profiling import TableProfile, profile_frame
from ods.domain.tenant_storage import dataset_card_key, dataset_key_prefix, quarantine_key_prefix
from ods.domain.webhooks import DATASET_CREATED, DATASET_UPDATED
from ods.errors import NotFoundError, OdsError
from ods.factories import build_object_store
from ods.quality.validation import validate_frame
from ods.settings import Settings

T = TypeVar("T")
DATASET_EVENT_NAMESPACE = uuid.UUID("9d4c2b1e-7a35-4f68-b0d2-3e8f1a6c5d47")
"""uuid5 namespace of dataset version events (fixed forever: changing it would re-fire known versions)."""


class SourceNotFoundError(OdsError):
    """The spec or the raw table named by a URI or path does not exist."""


class DatasetRejectedError(OdsError):
    """The cleaned data failed its expectations; the version is recorded as rejected."""


@dataclass(frozen=True)
class LoadedSpec:
    """A spec's text and where it came from; ``spec`` is its validated model.

    Only plain fields are stored, so Prefect can walk task inputs cheaply; the model is rebuilt on
    demand (milliseconds) wherever the object is copied.
    """

    uri: str
    name: str
    text: str
    base_dir: str | None

    @cached_property
    def spec(self) -> DatasetSpec:
        return parse_dataset_spec(self.text, source_name=self.name)

    @property
    def spec_hash(self) -> str:
        return self.spec.spec_hash()


class Handover(Generic[T]):
    """A large value (raw bytes, a raw frame) that one stage hands to the next, once.

    Prefect keeps every task's inputs and results referenced until the flow run ends; the stage that
    takes the value out lets it be freed as soon as it is done with it, so a run never holds the raw
    bytes, the raw frame and the cleaned frame at the same time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value: T | None = value

    def peek(self) -> T:
        """The value, which stays here."""
        if self._value is None:
            raise OdsError("this value was already handed to the next stage; run the stage again")
        return self._value

    def take(self) -> T:
        """The value; this holder no longer references it."""
        value = self.peek()
        self._value = None
        return value


@dataclass(frozen=True)
class SourceData:
    """The raw bytes of a source table with its identity; the read stage takes the bytes
    (:meth:`take_data`) so they are freed once parsed."""

    uri: str
    name: str
    sha256: str
    etag: str | None
    payload: Handover[bytes] = field(repr=False, compare=False)

    @property
    def data(self) -> bytes:
        """The bytes, unless the read stage has already taken them."""
        return self.payload.peek()

    def take_data(self) -> bytes:
        """The bytes, released from this object (identity fields stay)."""
        return self.payload.take()


@dataclass(frozen=True)
class WrittenTable:
    """A frame stored as zstd Parquet at a content-addressed key."""

    uri: str
    key: str
    content_hash: str
    size_bytes: int
    written: bool


def release_memory_promptly() -> None:
    """Let Arrow give freed memory back to the operating system at once.

    Arrow's default allocator keeps freed pages for reuse, so a process's resident size grows to the
    sum of every frame a run has built and stays there; jemalloc without decay returns them, for the
    same speed. Process-wide; builds without jemalloc keep their default.
    """
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)


def _split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise SourceNotFoundError(f"{uri!r} is not an object URI of the form s3://bucket/key")
    return bucket, key


def _store_key(uri: str, store: ObjectStore, settings: Settings) -> str:
    bucket, key = _split_s3_uri(uri)
    if store.kind != "minio" or bucket != settings.object_store.bucket:
        raise SourceNotFoundError(
            f"{uri!r} is not in the configured object store ({store.location}); "
            "copy it there or set ODS_OBJECT_STORE__BUCKET"
        )
    return key


def _is_relative(uri: str) -> bool:
    return "://" not in uri and not Path(uri).expanduser().is_absolute()


def _join_s3(base: str, relative: str) -> str:
    """``relative`` (``sales.csv``, ``../in/sales.csv``) against the object folder ``s3://bucket/prefix``."""
    bucket, _, prefix = base.removeprefix("s3://").partition("/")
    key = posixpath.normpath(posixpath.join(prefix, relative))
    if key.startswith("../") or key in ("..", "."):
        raise SourceNotFoundError(f"{relative!r} points outside bucket {bucket!r} (relative to {base}/)")
    return f"s3://{bucket}/{key}"


def fetch_bytes(
    uri: str, settings: Settings, *, base_dir: str | None = None
) -> tuple[bytes, str, str | None]:
    """Read a local path (relative ones against ``base_dir``) or an ``s3://bucket/key`` object.

    ``base_dir`` is the folder of the spec that names ``uri``: a local directory or an
    ``s3://bucket/prefix`` (a spec in the bucket names its table relative to itself, like a local one).
    Returns the bytes, the canonical URI and the ETag (object store only).
    """
    if base_dir is not None and base_dir.startswith("s3://") and _is_relative(uri):
        uri = _join_s3(base_dir, uri)
    if uri.startswith("s3://"):
        store = build_object_store(settings)
        key = _store_key(uri, store, settings)
        try:
            info = store.stat(key)
        except NotFoundError:
            raise SourceNotFoundError(
                f"no object {uri!r}: check the key (`ods` lists nothing there)"
            ) from None
        return store.get_bytes(key), store.uri(key), info.etag
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "no such file"
        raise SourceNotFoundError(f"cannot read {path}: {hint}; pass an existing file or s3://bucket/key")
    return path.read_bytes(), path.resolve().as_uri(), None


def load_spec(uri: str, settings: Settings) -> LoadedSpec:
    """Read and validate a dataset spec from a path or object URI."""
    data, canonical, _ = fetch_bytes(uri, settings)
    name = uri.rsplit("/", 1)[-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise OdsError(f"{name}: the spec is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    base_dir = (
        uri.rsplit("/", 1)[0]
        if uri.startswith("s3://")
        else str(Path(uri.removeprefix("file://")).expanduser().resolve().parent)
    )
    loaded = LoadedSpec(uri=canonical, name=name, text=text, base_dir=base_dir)
    loaded.spec  # noqa: B018 - validate now, so a bad spec fails the load stage
    return loaded


def fetch_source(loaded: LoadedSpec, settings: Settings, source: str | None = None) -> SourceData:
    """The raw table's bytes: ``source`` when given, else the spec's ``source.uri``."""
    uri = source or loaded.spec.source.uri
    data, canonical, etag = fetch_bytes(uri, settings, base_dir=None if source else loaded.base_dir)
    return SourceData(
        uri=canonical,
        name=uri.rsplit("/", 1)[-1],
        sha256=sha256_bytes(data),
        etag=etag,
        payload=Handover(data),
    )


def find_prepared_version(
    catalog: DatasetCatalog, loaded: LoadedSpec, source: SourceData
) -> DatasetVersionRecord | None:
    """The version an earlier run made from the same source bytes and spec, if any."""
    return catalog.find_dataset_version(
        loaded.spec.name, source_sha256=source.sha256, spec_hash=loaded.spec_hash
    )


def table_to_parquet(frame: pd.DataFrame) -> bytes:
    """Deterministic zstd Parquet bytes of ``frame`` (same frame, same bytes)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=True)
    return buffer.getvalue()


def write_parquet(store: ObjectStore, prefix: str, frame: pd.DataFrame) -> WrittenTable:
    """Store ``frame`` at ``<prefix>/<sha256>.parquet`` unless those exact bytes are already there."""
    return store_parquet(store, prefix, table_to_parquet(frame))


def store_parquet(store: ObjectStore, prefix: str, data: bytes) -> WrittenTable:
    """Store Parquet bytes (from :func:`table_to_parquet`) at ``<prefix>/<sha256>.parquet`` unless
    those exact bytes are already there."""
    content_hash = sha256_bytes(data)
    key = f"{prefix}/{content_hash}.parquet"
    written = False
    if not store.exists(key) or store.stat(key).sha256 not in (content_hash, None):
        store.put_bytes(key, data, content_type="application/vnd.apache.parquet")
        written = True
    return WrittenTable(
        uri=store.uri(key), key=key, content_hash=content_hash, size_bytes=len(data), written=written
    )


def frame_schema(frame: pd.DataFrame) -> dict[str, Any]:
    """Column names and Arrow types, as stored with the version."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    return {"columns": [{"name": field.name, "type": str(field.type)} for field in schema]}


def dataset_prefix(name: str, tenant: str = DEFAULT_TENANT) -> str:
    """Where the versions of ``tenant``'s dataset ``name`` live in the object store."""
    return dataset_key_prefix(name, tenant)


def dataset_tenant(catalog: DatasetCatalog, name: str, settings: Settings) -> str:
    """The tenant whose prefix dataset ``name``'s new objects go under: the one the catalog records for
    it (the API claims a dataset for its caller before the run), else ``ODS_TENANT`` (whose the catalog
    will create it as)."""
    try:
        return catalog.get_dataset(name).tenant
    except NotFoundError:
        return settings.tenant


@dataclass(frozen=True)
class PreparedVersion:
    """What a prepare run produced: the catalog record plus what a person needs to find it."""

    record: DatasetVersionRecord
    quarantine_uri: str | None = None
    quarantined_rows: int | None = None
    """How many rows the quarantine holds (0: the expectations that failed are about no single row)."""

    def event_id(self, event: str) -> uuid.UUID:
        """Deterministic id of this version's ``ods.dataset.registered|rejected`` event.

        Two runs ending on the same version (a raw table and its spec arriving together start two) emit
        one event, so Prefect starts its trigger (train-model) once. Keyed by name, number and the
        version's URI (store and content hash), not a catalog row id, as ``approval_event_id`` is.
        """
        record = self.record
        parts = (event, record.dataset_name, str(record.version), record.uri)
        return uuid.uuid5(DATASET_EVENT_NAMESPACE, "\n".join(parts))

    def summary(self, card_uri: str | None = None) -> DatasetVersionSummary:
        """What a person needs of this version (flow result, event payload basis, CLI output)."""
        record = self.record
        return copy_fields(
            DatasetVersionSummary,
            record,
            dataset=record.dataset_name,
            version_id=record.id,
            rows=record.row_count,
            quarantine_uri=self.quarantine_uri,
            quarantined_rows=self.quarantined_rows,
            card_uri=card_uri,
        )


class DatasetVersionSummary(BaseModel):
    """A prepared dataset version: the prepare-dataset flow's result and its events' payload."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    version: int
    version_id: int = Field(description="The version's catalog id.")
    status: str = Field(description="registered or rejected.")
    uri: str = Field(description="Where the cleaned table's Parquet is stored.")
    rows: int
    size_bytes: int
    content_hash: str = Field(description="sha256 of the stored Parquet bytes.")
    quarantine_uri: str | None = Field(description="Where the failing rows of a rejected version are.")
    quarantined_rows: int | None = Field(description="How many rows the quarantine holds.")
    reason: str | None = Field(description="Why a version was rejected.")
    card_uri: str | None = Field(default=None, description="Where the dataset card is stored.")


def register_version(
    catalog: DatasetCatalog,
    loaded: LoadedSpec,
    source: SourceData,
    written: WrittenTable,
    *,
    frame: pd.DataFrame,
    profile: TableProfile,
    validation_rows: list[dict[str, Any]],
    flow_run_id: str | None,
) -> PreparedVersion:
    """Record a registered version (idempotent by content hash) and its validation run."""
    record = catalog.add_dataset_version(
        loaded.spec.name,
        content_hash=written.content_hash,
        uri=written.uri,
        schema=frame_schema(frame),
        profile=dict(profile),
        row_count=len(frame),
        size_bytes=written.size_bytes,
        status="registered",
        description=loaded.spec.description or None,
        **_lineage(loaded, source, flow_run_id),
    )
    catalog.add_validation_run(record.id, success=True, results={"expectations": validation_rows})
    prepared = PreparedVersion(record=record)
    announce_version(catalog, prepared)
    return prepared


def announce_version(catalog: DatasetCatalog, prepared: PreparedVersion) -> None:
    """Write ``dataset.created`` (the dataset's first registered version) or ``dataset.updated`` to the
    webhooks' outbox, once per version (keyed by it: a re-run that finds the version writes nothing)."""
    if not isinstance(catalog, WebhookCatalog):
        return
    record = prepared.record
    earlier = any(
        version.status == "registered" and version.version < record.version
        for version in catalog.list_dataset_versions(record.dataset_name)
    )
    event = DATASET_UPDATED if earlier else DATASET_CREATED
    data = prepared.summary().model_dump(mode="json", exclude={"card_uri"})
    catalog.add_outbox_event(event, data, event_key=str(prepared.event_id(event)))


def reject_version(
    catalog: DatasetCatalog,
    store: ObjectStore,
    loaded: LoadedSpec,
    source: SourceData,
    *,
    frame: pd.DataFrame,
    failing_rows: list[int],
    profile: TableProfile,
    validation_rows: list[dict[str, Any]],
    reason: str,
    flow_run_id: str | None,
    tenant: str,
) -> PreparedVersion:
    """Quarantine the failing rows (under ``tenant``'s prefix) and record the version as rejected;
    nothing is registered.

    With no failing row (the expectations that failed are about the table, or about a column's type) the
    version still points at an empty quarantine table, but no quarantine is reported for it."""
    quarantine = write_parquet(
        store,
        quarantine_key_prefix(loaded.spec.name, tenant),
        frame.iloc[failing_rows].reset_index(drop=True),
    )
    # Keyed by data *and* spec: the same data may pass later under a revised spec and must then get a
    # registered version of its own instead of finding this rejected one.
    content_hash = stable_id("rejected", sha256_bytes(table_to_parquet(frame)), loaded.spec_hash, length=64)
    record = catalog.add_dataset_version(
        loaded.spec.name,
        content_hash=content_hash,
        uri=quarantine.uri,
        schema=frame_schema(frame),
        profile=dict(profile),
        row_count=len(frame),
        size_bytes=0,
        status="rejected",
        reason=reason,
        description=loaded.spec.description or None,
        **_lineage(loaded, source, flow_run_id),
    )
    quarantine_uri = quarantine.uri if failing_rows else None
    catalog.add_validation_run(
        record.id, success=False, results={"expectations": validation_rows}, quarantine_uri=quarantine_uri
    )
    return PreparedVersion(record=record, quarantine_uri=quarantine_uri, quarantined_rows=len(failing_rows))


class _Lineage(TypedDict):
    """What a version is made from, as the catalog records it: the source's bytes, the spec, the run."""

    source_uri: str
    source_etag: str | None
    source_sha256: str
    spec_hash: str
    flow_run_id: str | None


def _lineage(loaded: LoadedSpec, source: SourceData, flow_run_id: str | None) -> _Lineage:
    return _Lineage(
        source_uri=source.uri,
        source_etag=source.etag,
        source_sha256=source.sha256,
        spec_hash=loaded.spec_hash,
        flow_run_id=flow_run_id,
    )


def rejected_version(store: ObjectStore, record: DatasetVersionRecord) -> PreparedVersion:
    """A rejected version found again (same bytes and spec), with what its quarantine holds (read from
    the Parquet footer only)."""
    with store.filesystem().open_input_file(key_of(store, record.uri)) as stream:
        rows = pq.ParquetFile(stream).metadata.num_rows
    return PreparedVersion(record=record, quarantine_uri=record.uri if rows else None, quarantined_rows=rows)


def store_card(store: ObjectStore, record: DatasetVersionRecord, markdown: str, tenant: str) -> str:
    """Keep the dataset card beside the data: ``datasets/<name>/cards/v<version>.md``, under
    ``tenants/<tenant>/`` for a tenant other than the default."""
    key = dataset_card_key(record.dataset_name, tenant, record.version)
    store.put_bytes(key, markdown.encode("utf-8"), content_type="text/markdown; charset=utf-8")
    return store.uri(key)


def card_uri(store: ObjectStore, record: DatasetVersionRecord, tenant: str) -> str | None:
    """Where the card of ``record`` (a version of ``tenant``'s dataset) is kept, if it was written; a card
    written before datasets had per-tenant prefixes is found at the default tenant's key."""
    keys = dict.fromkeys(
        dataset_card_key(record.dataset_name, holder, record.version) for holder in (tenant, DEFAULT_TENANT)
    )
    return next((store.uri(key) for key in keys if store.exists(key)), None)


def head_rows(store: ObjectStore, uri: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of a stored Parquet table, reading only what they need."""
    with store.filesystem().open_input_file(key_of(store, uri)) as stream:
        batches = pq.ParquetFile(stream).iter_batches(batch_size=max(1, rows))
        first = next(batches, None)
        return pd.DataFrame() if first is None else first.to_pandas().head(rows)


def read_rows(store: ObjectStore, uri: str, offset: int, limit: int) -> pd.DataFrame:
    """Rows ``offset`` to ``offset + limit`` of a stored Parquet table (a page of a preview), reading only
    the row groups that hold them."""
    with store.filesystem().open_input_file(key_of(store, uri)) as stream:
        parquet = pq.ParquetFile(stream)
        groups: list[int] = []
        first_row = start = 0
        for group in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if start + rows > offset and start < offset + limit:
                if not groups:
                    first_row = start
                groups.append(group)
            start += rows
        if not groups:
            return parquet.schema_arrow.empty_table().to_pandas()
        table = parquet.read_row_groups(groups)
    return table.slice(offset - first_row, limit).to_pandas()


def rejection_message(prepared: PreparedVersion) -> str:
    """The one-line error a rejected run ends with."""
    record = prepared.record
    rejected = f"dataset {record.dataset_name!r} v{record.version} rejected: {record.reason}"
    if prepared.quarantined_rows == 0:
        return f"{rejected}; no row was quarantined (no expectation that failed is about single rows)"
    rows = "" if prepared.quarantined_rows is None else f"{prepared.quarantined_rows:,} "
    return f"{rejected}; {rows}failing row(s) quarantined at {prepared.quarantine_uri or record.uri}"


def spec_from_text(text: str, name: str) -> LoadedSpec:
    """A spec sent as text (YAML or JSON, e.g. in a request body) rather than read from a file; it names
    its source by an absolute URI, since it has no folder of its own. Validated now."""
    loaded = LoadedSpec(uri=f"request:{name}", name=name, text=text, base_dir=None)
    loaded.spec  # noqa: B018 - validate now, so a bad spec is refused before any work
    return loaded


def prepare_version(
    catalog: DatasetCatalog,
    store: ObjectStore,
    settings: Settings,
    loaded: LoadedSpec,
    source: str | None = None,
    *,
    run_id: str | None = None,
) -> DatasetVersionSummary:
    """The stages the prepare-dataset flow runs, in one call and without Prefect (``ods serve`` runs it in
    its background): fetch, find the version made before, read, clean, profile, validate, then register
    the version or quarantine its failing rows and record it rejected. A rejected version is returned
    (status ``rejected``, the failed expectations in ``reason``, ``quarantine_uri``), not raised.
    Emits no event: the flow does, for the triggers that follow a registered version."""
    raw = fetch_source(loaded, settings, source)
    existing = find_prepared_version(catalog, loaded, raw)
    tenant = dataset_tenant(catalog, loaded.spec.name, settings)
    if existing is not None:
        found = (
            rejected_version(store, existing) if existing.status == "rejected" else PreparedVersion(existing)
        )
        return found.summary(card_uri(store, existing, tenant))
    spec = loaded.spec
    frame = read_table(raw.take_data(), name=raw.name, source=spec.source)
    cleaned = apply_cleaning(frame, spec, pii_salt=settings.privacy.hash_salt.get_secret_value())
    del frame
    profile = profile_frame(cleaned.frame, cleaned.pii_kinds)
    report = validate_frame(cleaned.frame, spec.expectations)
    rows = [outcome.as_row() for outcome in report.outcomes]
    if report.success:
        written = store_parquet(store, dataset_prefix(spec.name, tenant), table_to_parquet(cleaned.frame))
        prepared = register_version(
            catalog, loaded, raw, written, frame=cleaned.frame, profile=profile, validation_rows=rows,
            flow_run_id=run_id,
        )  # fmt: skip
    else:
        prepared = reject_version(
            catalog, store, loaded, raw, frame=cleaned.frame, failing_rows=report.failing_rows,
            profile=profile, validation_rows=rows, reason="failed expectations: " + report.summary(),
            flow_run_id=run_id, tenant=tenant,
        )  # fmt: skip
    record = prepared.record
    card = render_dataset_card(
        name=record.dataset_name,
        version=record.version,
        status=record.status,
        uri=record.uri,
        rows_in=cleaned.rows_in,
        profile=profile,
        cleaning=cleaned.report_as_dicts(),
        validation=rows,
        lineage={
            "source": record.source_uri,
            "source etag": record.source_etag,
            "spec": loaded.uri,
            "spec hash": record.spec_hash,
            "content hash": record.content_hash,
            "run": record.flow_run_id,
            "quarantine": prepared.quarantine_uri,
        },
        description=spec.description,
    )
    return prepared.summary(store_card(store, record, card, tenant))
