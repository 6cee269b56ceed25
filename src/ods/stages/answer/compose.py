"""Answering a question from the knowledge base (RAG) and the registered datasets (Text-to-SQL).

One call does the seed's whole sequence: route the question, write and guard SQL and run it read-only
(``text_to_sql``), retrieve passages (``passages``), ask the model for an answer that cites both as
``[n]`` (here), and remember the turn in the conversation (``conversation``). No Prefect here: the CLI
calls it directly, the ``answer_question`` flow wraps it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

from ods.adapters.models.llm import LLM, PACKAGED_MODEL_ID
from ods.domain.answering import (
    NO_SOURCES_ANSWER,
    Evidence,
    Mode,
    build_answer_messages,
    check_claims,
    cited_markers,
    claims_footer,
    contextual_question,
    route_question,
    table_text,
)
from ods.domain.chat import ChatMessage
from ods.errors import OdsError
from ods.factories import open_catalog, open_llm
from ods.settings import Settings
from ods.stages.answer.conversation import recent_turns, remember_turn
from ods.stages.answer.passages import KeptAdapters, gather_passages, passage_evidence
from ods.stages.answer.results import Answer, Gathered
from ods.stages.answer.text_to_sql import gather_sql, run_sql


class Stopwatch:
    """Named durations of the steps of one answer."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 4)


def answer_question(
    settings: Settings,
    question: str,
    *,
    kb: str | None = None,
    datasets: Sequence[str] | None = None,
    conversation_id: str | None = None,
    mode: Mode = "auto",
    documents: Sequence[str] | None = None,
    database: bool = False,
    llm: LLM | None = None,
    on_text: Callable[[str], None] | None = None,
    remember: bool = True,
    adapters: KeptAdapters | None = None,
) -> Answer:
    """Answer ``question`` from knowledge base ``kb`` and/or ``datasets`` (``[]``: every registered one).

    ``documents`` (URIs or file names) restricts retrieval to those documents of ``kb``. With
    ``database`` the SQL runs on the configured read-only SQL database (``ODS_WAREHOUSE__URL``, its
    allowlisted tables) instead of the registered datasets.
    ``on_text`` receives the answer as it is generated. With ``remember`` the question and the answer
    (with its SQL and citations) are appended to the conversation, which is created when not given.
    ``adapters``: a long-lived caller's open catalog, embedder and indexes, used instead of opening them
    for this question (the CLI leaves it out).
    """
    question = question.strip()
    if not question:
        raise OdsError('the question is empty; ask something, e.g. ods ask "what is our returns policy?"')
    if kb is None and datasets is None and not database:
        raise OdsError(
            "nothing to answer from: name a knowledge base (--kb NAME) and/or datasets (--dataset NAME)"
        )
    if database and datasets:
        raise OdsError("ask either the registered datasets (--dataset) or the SQL database (--database)")
    clock = Stopwatch()
    with (
        clock.step("total"),
        open_catalog(settings) if adapters is None else nullcontext(adapters.catalog) as catalog,
    ):
        history, sql_history = recent_turns(catalog, conversation_id, settings.answer.history_turns)
        if kb is not None:
            catalog.get_knowledge_base(kb)  # an unknown knowledge base fails before any model loads
        route = route_question(
            question, mode=mode, has_documents=kb is not None, has_datasets=datasets is not None or database
        )
        model = llm or open_llm(settings)
        gathered = Gathered()
        if route in ("sql", "both"):
            with clock.step("sql"):
                refs = list(datasets or [])
                outcome = run_sql(settings, catalog, model, question, refs, sql_history, database)
                gather_sql(gathered, outcome)
        if route in ("rag", "both") and kb is not None:
            with clock.step("retrieval"):
                gather_passages(
                    gathered,
                    settings,
                    kb,
                    contextual_question(question, history),
                    documents or (),
                    adapters,
                )
            if gathered.passages:
                with clock.step("evidence"):
                    embedder = adapters.embedder if adapters is not None else None
                    gathered.evidence += passage_evidence(settings, question, gathered.passages, embedder)
        text, cited, model_id = _compose(gathered, settings, model, question, history, clock, on_text)
        conversation, message_id = (None, None)
        if remember:
            conversation, message_id = remember_turn(
                catalog, conversation_id, question, text, gathered, model_id, cited
            )
    return Answer(
        question=question,
        text=text,
        route=route,
        sources=tuple(gathered.sources),
        cited=tuple(cited),
        sql=gathered.sql_run,
        model=model_id,
        usage=gathered.usage,
        timings=clock.timings,
        conversation_id=conversation,
        message_id=message_id,
        notes=tuple(gathered.notes),
        evidence=tuple(gathered.evidence),
        claims=tuple(gathered.claims),
    )


def _compose(
    gathered: Gathered,
    settings: Settings,
    model: LLM,
    question: str,
    history: Sequence[ChatMessage],
    clock: Stopwatch,
    on_text: Callable[[str], None] | None,
) -> tuple[str, list[int], str | None]:
    """The answer text, the markers it cites, and the model that wrote it (``None`` when none did)."""
    evidence_markers = list(dict.fromkeys(item.marker for item in gathered.evidence))
    if not gathered.tables and not gathered.passages:
        text = NO_SOURCES_ANSWER + (f" ({gathered.notes[0]})" if gathered.notes else "")
        cited: list[int] = []
        model_id = None
    elif _answer_style(settings, model, gathered) == "extractive":
        # Quotes only: no generation, nothing a model could invent or be talked into.
        text = " ".join(_quoted(item) for item in gathered.evidence) or NO_SOURCES_ANSWER
        cited, model_id = evidence_markers, None
    else:
        messages = build_answer_messages(
            question, sources=gathered.passages, tables=gathered.tables, history=history
        )
        with clock.step("generation"):
            completion = model.complete(
                messages, max_tokens=settings.answer.max_tokens, temperature=0.0, on_text=on_text
            )
        gathered.usage += completion.usage
        markers = [source.marker for source in gathered.sources]
        cited = cited_markers(completion.text, markers)
        if not cited:
            # A small model often forgets the markers: the sources holding the evidence (else every
            # source it was given) are cited instead, and a note says so.
            cited = evidence_markers or markers
            gathered.notes.append(
                "the model cited no source by number; the sources of the evidence are listed"
            )
        return _checked(gathered, completion.text.strip(), question, on_text), cited, completion.model
    if on_text is not None:
        on_text(text)
    return text, cited, model_id


def _checked(gathered: Gathered, text: str, question: str, on_text: Callable[[str], None] | None) -> str:
    """The written answer followed by the sources it used and its flagged sentences (also streamed):
    each sentence is checked against the sources it cites (:func:`~ods.domain.answering.check_claims`)."""
    sources = {passage.marker: passage.text for passage in gathered.passages}
    sources |= {table.marker: table_text(table) for table in gathered.tables}
    gathered.claims = check_claims(text, sources, question=question)
    flagged = sum(claim.flagged for claim in gathered.claims)
    if flagged:
        gathered.notes.append(
            f"{flagged} sentence(s) of the answer are not backed by a source they cite; they are listed "
            "under the answer"
        )
    footer = "\n\n" + claims_footer(gathered.claims)
    if on_text is not None:
        on_text(footer)
    return text + footer


def _answer_style(settings: Settings, model: LLM, gathered: Gathered) -> str:
    """The configured style; ``auto`` quotes evidence instead of letting the 135M packaged model write.

    Measured on the demo documents: asked how long returns are accepted ("within 30 days"), SmolLM2-135M
    answered "2 working days" or "24 hours" whatever the prompt layout; its SQL is usable, its prose is not.
    """
    style = settings.answer.style
    if style != "auto":
        return style
    if model.model_id == PACKAGED_MODEL_ID:
        gathered.notes.append(
            f"answered with quoted evidence: the packaged {PACKAGED_MODEL_ID} is too small to write faithful "
            "answers (ODS_ANSWER__STYLE=generative lets it try; ODS_LLM__KIND=openai uses a served model)"
        )
        return "extractive"
    return "generative"


def _quoted(item: Evidence) -> str:
    text = item.text.rstrip()
    return text if text.endswith(f"[{item.marker}].") else f"{text.rstrip('.')} [{item.marker}]."
