"""Tasks of the ingest_documents flow: work in batches of documents, never a task per chunk."""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger

from ods.adapters.workers.parse_pool import shared_parser_pool
from ods.adapters.workers.process_memory import release_free_memory
from ods.domain.dataset_card import markdown_table
from ods.domain.events import KB_UPDATED, kb_resource
from ods.domain.sync_plan import ListedDocument, pipeline_batches
from ods.factories import build_embedder, open_catalog, open_index, open_source
from ods.settings import get_settings
from ods.stages.ingest import (
    PROGRESS_FIELD,
    BatchReport,
    DocumentLimits,
    IngestBatches,
    IngestSummary,
    PreparedBatch,
    delete_documents,
    dense_snapshot_due,
    embed_batch,
    index_batch,
    open_knowledge_base,
    plan_ingest,
    prepare_batch,
    retire_replaced_versions,
    summarize_ingest,
)
from tasks.presets import NOT_PERSISTED, RETRY_TRANSIENT_IO, ingest_progress_key, ingest_report_key


@task(name="plan-ingest", **NOT_PERSISTED, **RETRY_TRANSIENT_IO)
def plan_knowledge_base(source: str, kb: str, batch_size: int) -> IngestBatches:
    """Record the knowledge base, list its source and split the documents to read into batches."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        open_knowledge_base(catalog, settings, kb, source)
        plan = plan_ingest(
            catalog, kb, open_source(settings, source), DocumentLimits.from_settings(settings.ingest)
        )
    batches = pipeline_batches(plan.to_read, batch_size)
    get_run_logger().info(
        "%s: %d to read, %d unchanged, %d removed",
        kb,
        len(plan.to_read),
        len(plan.unchanged),
        len(plan.to_delete),
        extra={PROGRESS_FIELD: {"kb": kb, "total": len(plan.to_read), "done": 0}},
    )
    progress_id = create_progress_artifact(
        progress=0.0 if batches else 100.0, key=ingest_progress_key(kb), description=f"Ingesting {kb}"
    )
    return IngestBatches(
        batches=batches, unchanged=len(plan.unchanged), to_delete=plan.to_delete, progress_id=str(progress_id)
    )


@task(name="parse-batch", task_run_name="parse-batch-{number}", **NOT_PERSISTED, **RETRY_TRANSIENT_IO)
def parse_document_batch(source: str, kb: str, documents: list[ListedDocument], number: int) -> PreparedBatch:
    """Read, parse (isolated) and chunk one batch; quarantined and unchanged documents are recorded here
    (documents over the ``ODS_INGEST__MAX_DOCUMENT_*`` limits or with unusable names among them)."""
    settings = get_settings()
    embedder = build_embedder(settings.embedding)  # its tokenizer counts the chunks' tokens
    pool = shared_parser_pool()  # one worker process for many batches, not one per batch
    pool.start()  # a new worker's interpreter starts while the catalog opens
    with open_catalog(settings) as catalog:
        return prepare_batch(
            catalog=catalog,
            embedder=embedder,
            pool=pool,
            source=open_source(settings, source),
            kb=kb,
            documents=documents,
            limits=DocumentLimits.from_settings(settings.ingest),
        )


@task(name="embed-batch", task_run_name="embed-batch-{number}", **NOT_PERSISTED)
def embed_document_batch(prepared: PreparedBatch, number: int) -> PreparedBatch:
    """Embed every chunk of one parsed batch (the model is loaded once per process)."""
    embedded = embed_batch(prepared, build_embedder(get_settings().embedding))
    prepared.release()
    return embedded


@task(name="index-batch", task_run_name="index-batch-{number}", **NOT_PERSISTED, **RETRY_TRANSIENT_IO)
def index_document_batch(
    kb: str, prepared: PreparedBatch, number: int, batches: int, progress_id: str
) -> BatchReport:
    """Upsert one embedded batch into the vector index, drop its documents' old chunks, record it."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        index = open_index(settings, catalog.get_knowledge_base(kb), ingesting=True)
        try:
            report = index_batch(catalog=catalog, index=index, kb=kb, prepared=prepared)
        finally:
            index.close()
    prepared.release()  # written: a retry would not need it (this task only retries on failure)
    release_free_memory()  # what earlier batches freed goes back to the system: memory stays flat
    update_progress_artifact(UUID(progress_id), progress=100.0 * number / batches)
    get_run_logger().info(
        "batch %d/%d: %d indexed (%d chunks), %d unchanged, %d quarantined",
        number,
        batches,
        report.indexed,
        report.chunks,
        report.reused,
        len(report.quarantined),
        extra={
            PROGRESS_FIELD: {"kb": kb, "advance": report.indexed + report.reused + len(report.quarantined)}
        },
    )
    return report


@task(name="delete-removed", **NOT_PERSISTED, **RETRY_TRANSIENT_IO)
def delete_removed_documents(kb: str, uris: list[str], written: bool = True) -> int:
    """Delete the chunks of documents gone from the source and mark them deleted, and those of replaced
    versions still in the index (a document whose new version was quarantined); seal the index and,
    for a Milvus Lite file, write its dense snapshot (``ods.adapters.milvus.dense_snapshot``).

    A run that neither wrote nor deletes anything opens the index only when the collection has no
    current dense snapshot (another client wrote since, say): a Milvus Lite file opened by a new process
    is loaded whole, which would be most of an unchanged re-run's cost.
    """
    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
        replaced = bool(catalog.replaced_versions(kb))
        if not uris and not written and not replaced and not dense_snapshot_due(settings, record):
            return 0
        index = open_index(settings, record, ingesting=True)
        try:
            retired = retire_replaced_versions(catalog, index, kb)
            if retired:
                get_run_logger().info("%s: %d replaced version(s) removed from the index", kb, retired)
            deleted = delete_documents(catalog, index, kb, uris)
            snapshot_rows = index.write_search_snapshot()  # flushes; exact dense search on Milvus Lite
            if snapshot_rows is not None:
                get_run_logger().info("dense search snapshot of %s: %d chunks", kb, snapshot_rows)
            return deleted
        finally:
            index.close()


@task(name="report-ingest", **NOT_PERSISTED)
def report_ingest(
    kb: str, source: str, unchanged: int, reports: list[BatchReport], deleted: int
) -> IngestSummary:
    """Publish counts per status and the quarantined files with reasons; emit ods.kb.updated."""
    summary = summarize_ingest(kb, source, unchanged, reports, deleted)
    counted = ["indexed", "chunks", "unchanged", "quarantined", "deleted"]
    counts = markdown_table([summary.model_dump(include=set(counted))], counted)
    details = (
        markdown_table(summary.quarantined_documents, ["uri", "reason", "detail"])
        if summary.quarantined_documents
        else "No document was quarantined."
    )
    create_markdown_artifact(
        key=ingest_report_key(kb),
        markdown=f"# Ingest of `{kb}` from `{source}`\n\n{counts}\n\n## Quarantined\n\n{details}",
        description=f"Ingest report of {kb}",
    )
    if summary.changed_anything:
        emit_event(event=KB_UPDATED, resource=kb_resource(kb), payload=summary.event_payload())
    return summary
