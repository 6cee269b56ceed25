"""`ingest_documents`: keep a knowledge base in sync with its source folder or bucket prefix.

New and changed documents are parsed (in an isolated process), chunked, embedded and indexed in Milvus;
unchanged ones are skipped without being read; removed ones lose their chunks. Bad documents are
quarantined with a reason and the run still completes.
"""

from __future__ import annotations

from prefect import flow
from prefect.futures import PrefectFuture

from ods.domain.names import KnowledgeBaseName
from ods.domain.sync_plan import DOCUMENTS_PER_BATCH
from ods.stages.ingest import BatchReport, IngestSummary, PreparedBatch
from tasks.ingest import (
    delete_removed_documents,
    embed_document_batch,
    index_document_batch,
    parse_document_batch,
    plan_knowledge_base,
    report_ingest,
)
from tasks.presets import FLOW_RESULTS


@flow(name="ingest-documents", flow_run_name="ingest-{kb}", **FLOW_RESULTS)
def ingest_documents(
    source: str, kb: KnowledgeBaseName, batch_size: int = DOCUMENTS_PER_BATCH
) -> IngestSummary:
    """Bring knowledge base ``kb`` in line with ``source``.

    Args:
        source: a local folder or s3://bucket/prefix of the configured object store.
        kb: knowledge base name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter
            (checked before the run starts).
        batch_size: documents per task.
    """
    plan = plan_knowledge_base(source, kb, batch_size)
    batches = plan.batches
    # A three-stage pipeline: batch n+1 is read and parsed and batch n-1 indexed (each in a worker
    # thread, mostly outside the GIL or in other processes) while batch n is embedded here.
    reports: list[BatchReport] = []
    parsing: PrefectFuture[PreparedBatch] | None = None
    if batches:
        parsing = parse_document_batch.submit(source, kb, batches[0], 1)
    indexing: PrefectFuture[BatchReport] | None = None
    try:
        for number in range(1, len(batches) + 1):
            assert parsing is not None
            parsed = parsing.result()
            if number < len(batches):
                parsing = parse_document_batch.submit(source, kb, batches[number], number + 1)
            embedded = embed_document_batch(parsed, number)
            if indexing is not None:
                reports.append(indexing.result())  # batches are written in order, one at a time
            indexing = index_document_batch.submit(kb, embedded, number, len(batches), plan.progress_id)
        if indexing is not None:
            reports.append(indexing.result())
    finally:  # a failed stage still lets the batches in flight finish before the run ends
        for future in (parsing, indexing):
            if future is not None:
                future.wait()
    written = any(report.indexed for report in reports)
    deleted = delete_removed_documents(kb, plan.to_delete, written)
    return report_ingest(kb, source, plan.unchanged, reports, deleted)


if __name__ == "__main__":
    import sys

    ingest_documents(sys.argv[1], sys.argv[2])
