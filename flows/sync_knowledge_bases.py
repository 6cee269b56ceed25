"""`sync_knowledge_bases`: nightly, bring every knowledge base in the catalog in line with its source.

Each knowledge base runs the ingest-documents flow (as a subflow) against the source the catalog recorded
for it; unchanged documents are skipped without being read, so a quiet night costs a listing per base.
One failing knowledge base does not stop the others: the run ends Failed naming the failures, after the
others synced and the summary artifact was published. A run that a redeploy left beside the current
schedule's run for its night does nothing (tasks/schedules.py).
"""

from __future__ import annotations

from prefect import flow

from flows.ingest_documents import ingest_documents
from ods.domain.scheduled_runs import LeftoverSkip
from ods.domain.sync_plan import DOCUMENTS_PER_BATCH
from ods.stages.watch import KnowledgeBaseSync, KnowledgeBaseSyncReport
from tasks.presets import FLOW_RESULTS
from tasks.schedules import skip_redeploy_leftover
from tasks.watch import list_knowledge_base_sources, report_knowledge_base_sync

NO_SOURCE = "no source recorded: ingest it once with `ods kb ingest SOURCE KB`"


@flow(name="sync-knowledge-bases", **FLOW_RESULTS)
def sync_knowledge_bases(batch_size: int = DOCUMENTS_PER_BATCH) -> KnowledgeBaseSyncReport | LeftoverSkip:
    """Re-ingest every knowledge base from its recorded source.

    Args:
        batch_size: documents per ingest task.

    Returns one result per knowledge base (as JSON ``{"synced": N, "knowledge_bases": [...]}``), or the
    skip result of a redeploy's leftover run (:class:`ods.domain.scheduled_runs.LeftoverSkip`).
    """
    if (skipped := skip_redeploy_leftover()) is not None:
        return skipped
    results: list[KnowledgeBaseSync] = []
    for base in list_knowledge_base_sources():
        if base.source is None:
            results.append(KnowledgeBaseSync(kb=base.kb, status="failed", error=NO_SOURCE))
            continue
        state = ingest_documents(base.source, base.kb, batch_size, return_state=True)
        if state.is_completed():
            results.append(KnowledgeBaseSync(kb=base.kb, status="synced", ingest=state.result()))
        else:
            results.append(KnowledgeBaseSync(kb=base.kb, status="failed", error=state.message))
    return report_knowledge_base_sync(results)


if __name__ == "__main__":
    sync_knowledge_bases()
