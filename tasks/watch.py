"""Tasks of the event-driven flows (watch_bucket, sync_knowledge_bases, gate_model): thin wrappers adding retries and logging.

The watcher's tasks run in a fixed order (plan, emit, record): see :mod:`ods.stages.watch` for why events go
out before what was seen is recorded.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger

from ods.domain.bucket_diff import ObjectChange
from ods.domain.dataset_card import markdown_table
from ods.domain.deploy_gate import approval_event_id, approval_resource, evaluate_deploy_gate
from ods.domain.events import MODEL_APPROVED
from ods.domain.refs import format_ref, parse_model_ref
from ods.factories import build_object_store, open_catalog
from ods.settings import get_settings
from ods.stages.watch import (
    KnowledgeBaseSyncError,
    bucket_of,
    emit_object_events,
    emit_with_prefect,
    plan_bucket_changes,
    record_bucket_changes,
    sync_failure_message,
    uri_resolver,
    watch_layout,
)
from tasks.results import NOT_PERSISTED
from tasks.retry import retry_on_transient_errors

IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": retry_on_transient_errors,
}
IN_MEMORY = NOT_PERSISTED


@task(name="plan-bucket-changes", **IO_RETRIES, **IN_MEMORY)
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


@task(name="emit-object-events", **IO_RETRIES, **IN_MEMORY)
def emit_watched_events(changes: list[ObjectChange]) -> list[dict[str, Any]]:
    """Emit ods.object.created|deleted for each change (deterministic ids: a repeat is the same event)."""
    store = build_object_store(get_settings())
    events = emit_object_events(changes, uri_resolver(store), emit_with_prefect)
    for event in events:
        get_run_logger().info("emitted %s %s (id %s)", event.event, event.payload["key"], event.id)
    return [{"event": event.event, "key": event.payload["key"], "id": str(event.id)} for event in events]


@task(name="record-seen-objects", **IO_RETRIES, **IN_MEMORY)
def record_watched_changes(changes: list[ObjectChange]) -> int:
    """Record the changes as seen, so the next run does not emit them again."""
    settings = get_settings()
    store = build_object_store(settings)
    with open_catalog(settings) as catalog:
        return record_bucket_changes(catalog, bucket_of(store), changes)


@task(name="list-knowledge-bases", **IO_RETRIES, **IN_MEMORY)
def list_knowledge_base_sources() -> list[dict[str, str | None]]:
    """Every knowledge base in the catalog with its recorded source."""
    with open_catalog(get_settings()) as catalog:
        return [{"kb": base.name, "source": base.source_uri} for base in catalog.list_knowledge_bases()]


@task(name="report-sync", **IN_MEMORY)
def report_knowledge_base_sync(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish one row per knowledge base (synced or failed, with the reason); fail if any failed."""
    rows = [
        {
            "kb": result["kb"],
            "status": result["status"],
            "indexed": result.get("indexed", ""),
            "deleted": result.get("deleted", ""),
            "quarantined": result.get("quarantined", ""),
            "error": result.get("error", ""),
        }
        for result in results
    ]
    columns = ["kb", "status", "indexed", "deleted", "quarantined", "error"]
    table = markdown_table(rows, columns) if rows else "No knowledge base is recorded in the catalog."
    create_markdown_artifact(
        key="kb-sync", markdown=f"# Nightly knowledge base sync\n\n{table}", description="Knowledge base sync"
    )
    message = sync_failure_message(results)
    if message is not None:
        raise KnowledgeBaseSyncError(message)
    return {"synced": len(results), "knowledge_bases": results}


@task(name="gate-model-version", **IO_RETRIES, **IN_MEMORY)
def gate_model_version(ref: str) -> dict[str, Any]:
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
    summary = {
        "model": record.model_name,
        "version": record.version,
        "model_ref": ref,
        "trainer": record.trainer,
    }
    if decision.passed and gate is not None:  # no gate never passes
        emit_event(
            event=MODEL_APPROVED,
            resource=approval_resource(record.model_name, gate.backend),
            payload={**summary, "backend": gate.backend, "metrics": record.metrics},
            id=approval_event_id(record.model_name, record.version, record.artifact_uri),
        )
        get_run_logger().info(
            "%s passed its deploy gate: ods.model.approved emitted (backend %s)", ref, gate.backend
        )
    else:
        get_run_logger().info("%s not deployed automatically: %s", ref, "; ".join(decision.reasons))
    return {**summary, "approved": decision.passed, "reasons": list(decision.reasons)}
