"""Tasks of the prepare_dataset flow: thin wrappers adding retries, logging, artifacts and events.

Frames move between these tasks in memory inside one flow run, so the tasks that take or return a frame
neither cache nor persist results (hashing or pickling a million-row frame would cost more than the work).
Prefect keeps every task's inputs and results referenced until the run ends, so the raw bytes and the raw
frame travel in a :class:`~ods.stages.prepare.Handover` that the next stage empties: each is freed as soon
as it has been parsed or cleaned.
"""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from ods.adapters.catalog.records import DatasetVersionRecord
from ods.adapters.tabular.source import read_table
from ods.domain.cleaning import CleaningResult, apply_cleaning
from ods.domain.dataset_card import render_dataset_card
from ods.domain.events import dataset_event_name, dataset_resource
from ods.domain.profiling import TableProfile, profile_frame
from ods.factories import build_object_store, open_catalog
from ods.quality.validation import ValidationReport, start_validation_worker, validate_frame
from ods.settings import get_settings
from ods.stages.prepare import (
    DatasetRejectedError,
    DatasetVersionSummary,
    Handover,
    LoadedSpec,
    PreparedVersion,
    SourceData,
    WrittenTable,
    card_uri,
    dataset_prefix,
    dataset_tenant,
    fetch_source,
    find_prepared_version,
    load_spec,
    register_version,
    reject_version,
    rejected_version,
    rejection_message,
    release_memory_promptly,
    store_card,
    store_parquet,
    table_to_parquet,
)
from tasks.presets import NOT_PERSISTED, RETRY_TRANSIENT_IO, dataset_card_key, validation_table_key


@task(name="load-spec", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def load_dataset_spec(spec: str) -> LoadedSpec:
    """Read and validate the dataset spec."""
    return load_spec(spec, get_settings())


@task(name="fetch-source", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def fetch_raw_source(loaded: LoadedSpec, source: str | None) -> SourceData:
    """Read the raw table's bytes and hash them."""
    data = fetch_source(loaded, get_settings(), source)
    get_run_logger().info("read %s: %d bytes, sha256 %s", data.uri, len(data.data), data.sha256[:12])
    return data


@task(name="find-prepared-version", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def find_existing_version(loaded: LoadedSpec, source: SourceData) -> DatasetVersionRecord | None:
    """The version an earlier run made from the same bytes and spec (the idempotent fast path)."""
    with open_catalog(get_settings()) as catalog:
        return find_prepared_version(catalog, loaded, source)


def start_validator(loaded: LoadedSpec) -> None:
    """Start Great Expectations' worker process now (not a task: it returns at once), so its ~2 s import
    overlaps reading and cleaning instead of adding to them."""
    if loaded.spec.expectations:
        start_validation_worker()


@task(name="read-table", **NOT_PERSISTED)
def read_raw_table(loaded: LoadedSpec, source: SourceData) -> Handover[pd.DataFrame]:
    """Parse the raw bytes (taking them from ``source``, so they are freed) into a frame of text columns."""
    release_memory_promptly()
    frame = read_table(source.take_data(), name=source.name, source=loaded.spec.source)
    get_run_logger().info("parsed %d rows x %d columns from %s", len(frame), len(frame.columns), source.name)
    return Handover(frame)


@task(name="clean-table", **NOT_PERSISTED)
def clean_table(loaded: LoadedSpec, raw: Handover[pd.DataFrame]) -> CleaningResult:
    """Apply the spec's column selection and cleaning steps (taking the raw frame, so it is freed)."""
    salt = get_settings().privacy.hash_salt.get_secret_value()
    result = apply_cleaning(raw.take(), loaded.spec, pii_salt=salt)
    get_run_logger().info("cleaned: %d rows in, %d rows out", result.rows_in, result.rows_out)
    return result


@task(name="profile-table", **NOT_PERSISTED)
def profile_table(cleaned: CleaningResult) -> TableProfile:
    """Profile every column and scan text columns for personal data."""
    return profile_frame(cleaned.frame, cleaned.pii_kinds)


@task(name="validate-table", **NOT_PERSISTED)
def validate_table(loaded: LoadedSpec, cleaned: CleaningResult) -> ValidationReport:
    """Run the spec's expectations with Great Expectations (in its worker process, so while it works this
    process is free to profile)."""
    report = validate_frame(cleaned.frame, loaded.spec.expectations)
    if report.seconds:
        get_run_logger().info(
            "validated %d rows with Great Expectations in %.2f s (%.2f s of it waiting for its worker to start)",
            len(cleaned.frame),
            sum(report.seconds.values()),
            report.seconds["waiting for worker"],
        )
    create_table_artifact(
        key=validation_table_key(loaded.spec.name),
        table=[outcome.as_row() for outcome in report.outcomes] or [{"expectation": "none", "success": True}],
        description=f"Expectation results of dataset {loaded.spec.name}",
    )
    return report


@task(name="encode-table", **NOT_PERSISTED)
def encode_table(cleaned: CleaningResult) -> bytes:
    """The cleaned frame as zstd Parquet bytes (no I/O: it runs alongside profiling and validation, and
    nothing is stored before the expectations pass)."""
    return table_to_parquet(cleaned.frame)


@task(name="write-table", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def write_table(loaded: LoadedSpec, parquet: bytes) -> WrittenTable:
    """Store the cleaned table's Parquet bytes at their content-addressed key, under the dataset's tenant."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        tenant = dataset_tenant(catalog, loaded.spec.name, settings)
    written = store_parquet(build_object_store(settings), dataset_prefix(loaded.spec.name, tenant), parquet)
    get_run_logger().info(
        "%s %s (%d bytes)", "wrote" if written.written else "reused", written.uri, written.size_bytes
    )
    return written


def _publish(
    prepared: PreparedVersion,
    loaded: LoadedSpec,
    cleaned: CleaningResult,
    profile: TableProfile,
    report: ValidationReport,
    tenant: str,
) -> str:
    """Publish the dataset card (artifact and object store, under ``tenant``'s prefix), and emit
    ods.dataset.registered or .rejected."""
    record = prepared.record
    card = render_dataset_card(
        name=record.dataset_name,
        version=record.version,
        status=record.status,
        uri=record.uri,
        rows_in=cleaned.rows_in,
        profile=profile,
        cleaning=cleaned.report_as_dicts(),
        validation=[outcome.as_row() for outcome in report.outcomes],
        lineage={
            "source": record.source_uri,
            "source etag": record.source_etag,
            "spec": loaded.uri,
            "spec hash": record.spec_hash,
            "content hash": record.content_hash,
            "flow run": record.flow_run_id,
            "quarantine": prepared.quarantine_uri,
        },
        description=loaded.spec.description,
    )
    create_markdown_artifact(
        key=dataset_card_key(record.dataset_name), markdown=card, description="Dataset card"
    )
    card_location = store_card(build_object_store(get_settings()), record, card, tenant)
    payload = {**prepared.summary(card_location).model_dump(mode="json"), "train": loaded.spec.train}
    event = dataset_event_name(record.status == "registered")
    emit_event(
        event=event,
        # Triggers match labels, not payloads: the dataset's train label lets prefect.yaml start
        # train-model only for datasets whose spec has a `train:` block.
        resource=dataset_resource(record.dataset_name, train=bool(loaded.spec.train)),
        payload=payload,
        id=prepared.event_id(event),
    )
    return card_location


@task(name="register-version", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def register_dataset_version(
    loaded: LoadedSpec,
    source: SourceData,
    cleaned: CleaningResult,
    profile: TableProfile,
    report: ValidationReport,
    written: WrittenTable,
) -> DatasetVersionSummary:
    """Record the registered version, publish its card and emit ods.dataset.registered."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        prepared = register_version(
            catalog,
            loaded,
            source,
            written,
            frame=cleaned.frame,
            profile=profile,
            validation_rows=[outcome.as_row() for outcome in report.outcomes],
            flow_run_id=flow_run.id,
        )
        tenant = dataset_tenant(catalog, loaded.spec.name, settings)
    card_location = _publish(prepared, loaded, cleaned, profile, report, tenant)
    get_run_logger().info("registered %s v%d", prepared.record.dataset_name, prepared.record.version)
    return prepared.summary(card_location)


@task(name="reject-version", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def reject_dataset_version(
    loaded: LoadedSpec,
    source: SourceData,
    cleaned: CleaningResult,
    profile: TableProfile,
    report: ValidationReport,
) -> None:
    """Quarantine the failing rows, record the rejected version, emit ods.dataset.rejected, and fail."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        tenant = dataset_tenant(catalog, loaded.spec.name, settings)
        prepared = reject_version(
            catalog,
            build_object_store(settings),
            loaded,
            source,
            frame=cleaned.frame,
            failing_rows=report.failing_rows,
            profile=profile,
            validation_rows=[outcome.as_row() for outcome in report.outcomes],
            reason="failed expectations: " + report.summary(),
            flow_run_id=flow_run.id,
            tenant=tenant,
        )
    _publish(prepared, loaded, cleaned, profile, report, tenant)
    raise DatasetRejectedError(rejection_message(prepared))


@task(name="reuse-version", **NOT_PERSISTED)
def reuse_existing_version(loaded: LoadedSpec, existing: DatasetVersionRecord) -> DatasetVersionSummary:
    """Return the version an earlier run made; a rejected one fails again with its recorded reason."""
    settings = get_settings()
    store = build_object_store(settings)
    prepared = (
        rejected_version(store, existing) if existing.status == "rejected" else PreparedVersion(existing)
    )
    get_run_logger().info(
        "%s v%d already prepared from these bytes and spec: nothing to do",
        existing.dataset_name,
        existing.version,
    )
    if existing.status == "rejected":
        raise DatasetRejectedError(rejection_message(prepared))
    with open_catalog(settings) as catalog:
        tenant = dataset_tenant(catalog, existing.dataset_name, settings)
    return prepared.summary(card_uri(store, existing, tenant))
