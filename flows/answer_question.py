"""`answer_question`: answer from the documents (RAG), the registered datasets (Text-to-SQL), or both.

Every answer cites its sources as [n] (a document page or the SQL result), shows the SQL it ran, and is
kept in the conversation so follow-up questions can build on it.
"""

from __future__ import annotations

from prefect import flow

from ods.domain.answering import Mode
from ods.stages.answer import Answer
from tasks.answer import answer
from tasks.presets import FLOW_RESULTS


@flow(name="answer-question", flow_run_name="answer-{mode}", **FLOW_RESULTS)
def answer_question(
    question: str,
    kb: str | None = None,
    datasets: list[str] | None = None,
    conversation_id: str | None = None,
    mode: Mode = "auto",
    documents: list[str] | None = None,
    database: bool = False,
) -> Answer:
    """Answer a question with citations, from a knowledge base and/or registered datasets.

    Args:
        question: what to answer, in plain words.
        kb: knowledge base to search (documents); leave empty to use datasets only.
        datasets: registered datasets to query with SQL, as NAME or NAME@VERSION; an empty list means
            every registered dataset; leave unset to use documents only.
        conversation_id: continue this conversation (its recent turns are used); unset starts a new one.
        mode: 'auto' routes by the question; 'rag', 'sql' or 'both' force the sources used.
        documents: search only these documents of the knowledge base (URIs or file names).
        database: query the configured read-only SQL database (ODS_WAREHOUSE__URL) instead of datasets.
    """
    return answer(question, kb, datasets, conversation_id, mode, documents, database)
