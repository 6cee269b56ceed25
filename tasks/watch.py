"""Tasks of the event-driven flows (watch_bucket, sync_knowledge_bases, gate_model): thin wrappers adding retries and logging.

The watcher's tasks run in a fixed order (plan, emit, record): see :mod:`ods.stages.watch` for why events go
out before what was seen is recorded.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger

from ods.domain.bucket_diff import ObjectChange
from ods.domain.dataset_card import markdown_table
from ods.domain.deploy_gate import GateResult, approval_event_id, approval_resource, evaluate_deploy_gate
from ods.domain.events import MODEL_APPROVED
from ods.domain.refs import format_ref, parse_model_ref
from ods.factories import build_object_store, open_catalog
from ods.settings import get_settings
from ods.stages.watch import (
    EmittedEvent,
    KnowledgeBaseSource,
    KnowledgeBaseSync,
    KnowledgeBaseSyncError,
    KnowledgeBaseSyncReport,
    bucket_of,
    emit_object_events,
    emit_with_prefect,
    plan_bucket_changes,
    record_bucket_changes,
    sync_failure_message,
    uri_resolver,
    watch_layout,
)
from tasks.presets import KB_SYNC_ARTIFACT, NOT_PERSISTED, RETRY_TRANSIENT_IO


@task(name="plan-bucket-changes", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def plan_watched_changes() -> list[ObjectChange]:
    """List the watched prefixes and diff them against what the catalog has seen."""
    settings = get_settings()
    store = build_object_store(settings)
    with open_catalog(settings) as catalog:
        changes = plan_bucket_changes(store, catalog, watch_layout(settings))
    get_run_logger().info(
        "%s: %d created, %d deleted",
        bucket_of(store),
        sum(change.action == "created" for change in changes),
        sum(change.action == "deleted" for change in changes),
    )
    return changes


@task(name="emit-object-events", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def emit_watched_events(changes: list[ObjectChange]) -> list[EmittedEvent]:
    """Emit ods.object.created|deleted for each change (deterministic ids: a repeat is the same event)."""
    store = build_object_store(get_settings())
    events = emit_object_events(changes, uri_resolver(store), emit_with_prefect)
    for event in events:
        get_run_logger().info("emitted %s %s (id %s)", event.event, event.payload["key"], event.id)
    return [EmittedEvent.of(event) for event in events]


@task(name="record-seen-objects", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def record_watched_changes(changes: list[ObjectChange]) -> int:
    """Record the changes as seen, so the next run does not emit them again."""
    settings = get_settings()
    store = build_object_store(settings)
    with open_catalog(settings) as catalog:
        return record_bucket_changes(catalog, bucket_of(store), changes)


@task(name="list-knowledge-bases", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def list_knowledge_base_sources() -> list[KnowledgeBaseSource]:
    """Every knowledge base in the catalog with its recorded source."""
    with open_catalog(get_settings()) as catalog:
        return [KnowledgeBaseSource(base.name, base.source_uri) for base in catalog.list_knowledge_bases()]


@task(name="report-sync", **NOT_PERSISTED)
def report_knowledge_base_sync(results: list[KnowledgeBaseSync]) -> KnowledgeBaseSyncReport:
    """Publish one row per knowledge base (synced or failed, with the reason); fail if any failed."""
    rows = [
        {
            "kb": result.kb,
            "status": result.status,
            "indexed": "" if result.ingest is None else result.ingest.indexed,
            "deleted": "" if result.ingest is None else result.ingest.deleted,
            "quarantined": "" if result.ingest is None else result.ingest.quarantined,
            "error": result.error or "",
        }
        for result in results
    ]
    columns = ["kb", "status", "indexed", "deleted", "quarantined", "error"]
    table = markdown_table(rows, columns) if rows else "No knowledge base is recorded in the catalog."
    create_markdown_artifact(
        key=KB_SYNC_ARTIFACT,
        markdown=f"# Nightly knowledge base sync\n\n{table}",
        description="Knowledge base sync",
    )
    message = sync_failure_message(results)
    if message is not None:
        raise KnowledgeBaseSyncError(message)
    return KnowledgeBaseSyncReport(synced=len(results), knowledge_bases=results)


@task(name="gate-model-version", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def gate_model_version(ref: str) -> GateResult:
    """Check a registered version (NAME@VERSION) against its model's deploy gate; emit ods.model.approved
    if it passes."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = catalog.get_model_version(*parse_model_ref(ref))
    gate = settings.watch.deploy_gates.get(record.model_name)
    decision = evaluate_deploy_gate(
        record.model_name,
        record.trainer,
        record.metrics,
        gate.min if gate else None,
        gate.max if gate else None,
    )
    ref = format_ref(record.model_name, record.version)
    result = GateResult(
        model=record.model_name,
        version=record.version,
        model_ref=ref,
        trainer=record.trainer,
        approved=decision.passed,
        reasons=list(decision.reasons),
    )
    if decision.passed and gate is not None:  # no gate never passes
        emit_event(
            event=MODEL_APPROVED,
            resource=approval_resource(record.model_name, gate.backend),
            payload={
                **result.model_dump(mode="json", include={"model", "version", "model_ref", "trainer"}),
                "backend": gate.backend,
                "metrics": record.metrics,
            },
            id=approval_event_id(record.model_name, record.version, record.artifact_uri),
        )
        get_run_logger().info(
            "%s passed its deploy gate: ods.model.approved emitted (backend %s)", ref, gate.backend
        )
    else:
        get_run_logger().info("%s not deployed automatically: %s", ref, "; ".join(decision.reasons))
    return result
