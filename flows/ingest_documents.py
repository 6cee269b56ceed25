"""`ingest_documents`: keep a knowledge base in sync with its source folder or bucket prefix.

New and changed documents are parsed (in an isolated process), chunked, embedded and indexed in Milvus;
unchanged ones are skipped without being read; removed ones lose their chunks. Bad documents are
quarantined with a reason and the run still completes.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.ingest import delete_removed_documents, ingest_document_batch, plan_knowledge_base, report_ingest


@flow(name="ingest-documents", flow_run_name="ingest-{kb}")
def ingest_documents(source: str, kb: str, batch_size: int = 64) -> dict[str, Any]:
    """Bring knowledge base ``kb`` in line with ``source``.

    Args:
        source: a local folder or s3://bucket/prefix of the configured object store.
        kb: knowledge base name (lowercase letters, digits, '_' or '-').
        batch_size: documents per task.
    """
    plan = plan_knowledge_base(source, kb, batch_size)
    batches = plan["batches"]
    reports = [
        ingest_document_batch(source, kb, batch, number, len(batches), plan["progress_id"])
        for number, batch in enumerate(batches, start=1)
    ]
    written = any(report["indexed"] for report in reports)
    deleted = delete_removed_documents(kb, plan["to_delete"], written)
    return report_ingest(kb, source, plan["unchanged"], reports, deleted)


if __name__ == "__main__":
    import sys

    ingest_documents(sys.argv[1], sys.argv[2])
