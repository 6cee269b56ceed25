"""The task of the answer_question flow: one answer, its markdown artifact, and a log line of its cost."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from ods.domain.answering import Mode
from ods.settings import get_settings
from ods.stages.answer import Answer, answer_markdown, answer_question
from tasks.presets import ANSWER_ARTIFACT, NOT_PERSISTED


@task(name="answer", **NOT_PERSISTED)
def answer(
    question: str,
    kb: str | None,
    datasets: list[str] | None,
    conversation_id: str | None,
    mode: Mode,
    documents: list[str] | None = None,
    database: bool = False,
) -> Answer:
    """Answer one question; no retries, since a retry would add the turn to the conversation twice."""
    logger = get_run_logger()
    result = answer_question(
        get_settings(),
        question,
        kb=kb,
        datasets=datasets,
        conversation_id=conversation_id,
        mode=mode,
        documents=documents,
        database=database,
    )
    logger.info(
        "answered by %s via %s in %.1f s (%d tokens), %d citation(s), conversation %s",
        result.model or "no model",
        result.route,
        result.timings.get("total", 0.0),
        result.usage.total_tokens,
        len(result.citations),
        result.conversation_id,
    )
    create_markdown_artifact(
        key=ANSWER_ARTIFACT, markdown=answer_markdown(result), description=f"Answer to: {question[:120]}"
    )
    return result
