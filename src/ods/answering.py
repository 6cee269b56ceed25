"""Answering a question from the knowledge base (RAG) and the registered datasets (Text-to-SQL).

One call does the seed's whole sequence: route the question, write and guard SQL and run it read-only,
retrieve passages, ask the model for an answer that cites both as ``[n]``, and remember the turn in the
conversation. No Prefect here: the CLI calls it directly, the ``answer_question`` flow wraps it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from ods.adapters.catalog import Catalog, CitationRecord
from ods.adapters.embedder import build_embedder
from ods.adapters.llm import LLM, PACKAGED_MODEL_ID, ResolvedEndpoint, build_llm
from ods.adapters.vectors import FilterValue
from ods.adapters.warehouse import QueryResult, Warehouse, open_sql_database_warehouse, open_warehouse
from ods.domain.answering import (
    NO_SOURCES_ANSWER,
    ClaimCheck,
    Evidence,
    Mode,
    Route,
    Source,
    TableResult,
    build_answer_messages,
    check_claims,
    cited_markers,
    claims_footer,
    contextual_question,
    pick_evidence,
    recent_history,
    render_table,
    route_question,
    sources_used,
    split_sentences,
    summarise_table,
    table_text,
    without_instructions,
)
from ods.domain.chat import ChatMessage, Usage
from ods.domain.sql_guard import SqlRejected
from ods.domain.text_to_sql import TableDescription, build_sql_messages, extract_sql
from ods.errors import NotFoundError, OdsError
from ods.preparation import open_catalog
from ods.retrieval import resolve_documents, retrieve_passages
from ods.settings import Settings

SQL_MAX_TOKENS = 200
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class AnswerSource:
    """Source ``[marker]`` of an answer, resolved to what a person can open: a document page or a dataset."""

    marker: int
    kind: Literal["document", "dataset"]
    label: str
    excerpt: str
    doc_uri: str | None = None
    page: int | None = None
    heading: str | None = None
    chunk_id: str | None = None
    dataset: str | None = None
    dataset_version_id: int | None = None
    score: float | None = None


@dataclass(frozen=True)
class SqlRun:
    """What the Text-to-SQL step did: the SQL, its result, or why nothing ran."""

    datasets: tuple[str, ...]
    sql: str | None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    truncated: bool = False
    error: str | None = None
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.sql is not None

    def table_markdown(self, max_rows: int = 20) -> str:
        return render_table(self.columns, self.rows, max_rows=max_rows) if self.succeeded else ""


@dataclass(frozen=True)
class Answer:
    """A grounded answer: the text, the sources it cites, the SQL it ran, and what it cost."""

    question: str
    text: str
    route: Route
    sources: tuple[AnswerSource, ...]
    cited: tuple[int, ...]
    sql: SqlRun | None
    model: str | None
    usage: Usage
    timings: dict[str, float]
    conversation_id: str | None = None
    message_id: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    claims: tuple[ClaimCheck, ...] = field(default_factory=tuple)
    """A written answer's sentences checked against its sources (empty for quoted and canned answers)."""

    @property
    def sources_used(self) -> tuple[int, ...]:
        """The sources the answer rests on: for a written one, those its claims are backed by (see
        :func:`~ods.domain.answering.sources_used`); for a quoted one, those it quotes."""
        return tuple(sources_used(self.claims)) if self.claims else self.cited

    @property
    def unsupported(self) -> tuple[ClaimCheck, ...]:
        """The sentences of a written answer flagged as not backed by a source they cite."""
        return tuple(claim for claim in self.claims if claim.flagged)

    @property
    def citations(self) -> tuple[AnswerSource, ...]:
        """The sources the answer cites, in the order it cites them."""
        by_marker = {source.marker: source for source in self.sources}
        return tuple(by_marker[marker] for marker in self.cited if marker in by_marker)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (flow result, ``ods ask --json``)."""
        return {
            "question": self.question,
            "answer": self.text,
            "route": self.route,
            "citations": [_source_dict(source) for source in self.citations],
            "sql": None
            if self.sql is None
            else {
                "datasets": list(self.sql.datasets),
                "sql": self.sql.sql,
                "columns": list(self.sql.columns),
                "rows": [list(row) for row in self.sql.rows[:50]],
                "truncated": self.sql.truncated,
                "error": self.sql.error,
            },
            "model": self.model,
            "usage": self.usage.as_dict(),
            "timings": self.timings,
            "conversation_id": self.conversation_id,
            "evidence": [{"marker": e.marker, "text": e.text, "score": e.score} for e in self.evidence],
            "sources_used": list(self.sources_used),
            "unsupported": [{"sentence": c.sentence, "problem": c.problem} for c in self.unsupported],
            "claims": [
                {
                    "sentence": c.sentence,
                    "cited": list(c.cited),
                    "supported_by": list(c.supported_by),
                    "problem": c.problem,
                }
                for c in self.claims
            ],
            "notes": list(self.notes),
        }


def _source_dict(source: AnswerSource) -> dict[str, Any]:
    return {
        "marker": source.marker,
        "kind": source.kind,
        "label": source.label,
        "doc_uri": source.doc_uri,
        "page": source.page,
        "heading": source.heading,
        "chunk_id": source.chunk_id,
        "dataset": source.dataset,
        "score": source.score,
    }


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


def open_llm(settings: Settings) -> LLM:
    """The configured model; ``kind=openai`` without an endpoint uses the model's active catalog endpoint."""

    def active_endpoint(model_name: str) -> ResolvedEndpoint | None:
        with open_catalog(settings) as catalog:
            endpoint = catalog.active_endpoint(model_name)
        return ResolvedEndpoint(endpoint.url, endpoint.served_model) if endpoint is not None else None

    return build_llm(settings.llm, resolve_endpoint=active_endpoint)


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
) -> Answer:
    """Answer ``question`` from knowledge base ``kb`` and/or ``datasets`` (``[]``: every registered one).

    ``documents`` (URIs or file names) restricts retrieval to those documents of ``kb``. With
    ``database`` the SQL runs on the configured read-only SQL database (``ODS_WAREHOUSE__URL``, its
    allowlisted tables) instead of the registered datasets.
    ``on_text`` receives the answer as it is generated. With ``remember`` the question and the answer
    (with its SQL and citations) are appended to the conversation, which is created when not given.
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
    with clock.step("total"), open_catalog(settings) as catalog:
        history, sql_history = _history(catalog, conversation_id, settings.answer.history_turns)
        if kb is not None:
            catalog.get_knowledge_base(kb)  # an unknown knowledge base fails before any model loads
        route = route_question(
            question, mode=mode, has_documents=kb is not None, has_datasets=datasets is not None or database
        )
        model = llm or open_llm(settings)
        gathered = _Gathered()
        if route in ("sql", "both"):
            with clock.step("sql"):
                _gather_sql(
                    gathered, settings, catalog, model, question, list(datasets or []), sql_history, database
                )
        if route in ("rag", "both") and kb is not None:
            with clock.step("retrieval"):
                _gather_passages(
                    gathered, settings, kb, contextual_question(question, history), documents or ()
                )
            if gathered.passages:
                with clock.step("evidence"):
                    gathered.evidence += _passage_evidence(settings, question, gathered.passages)
        text, cited, model_id = _compose(gathered, settings, model, question, history, clock, on_text)
        conversation, message_id = (None, None)
        if remember:
            conversation, message_id = _remember(
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


@dataclass
class _Gathered:
    """What one answer collected before writing it: the query result, the passages, notes and cost."""

    sql_run: SqlRun | None = None
    tables: list[TableResult] = field(default_factory=list)
    passages: list[Source] = field(default_factory=list)
    sources: list[AnswerSource] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    claims: list[ClaimCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


def _gather_sql(
    gathered: _Gathered,
    settings: Settings,
    catalog: Catalog,
    model: LLM,
    question: str,
    datasets: list[str],
    history: Sequence[ChatMessage],
    database: bool = False,
) -> None:
    sql_run, usage, version_ids = _run_sql(settings, catalog, model, question, datasets, history, database)
    gathered.sql_run = sql_run
    gathered.usage += usage
    if not sql_run.succeeded or sql_run.sql is None:
        gathered.notes.append(f"SQL step: {sql_run.error}")
        return
    dataset = ", ".join(sql_run.datasets)
    table = TableResult(
        marker=1,
        dataset=dataset,
        sql=sql_run.sql,
        columns=sql_run.columns,
        rows=sql_run.rows,
        truncated=sql_run.truncated,
    )
    gathered.tables.append(table)
    gathered.sources.append(
        AnswerSource(
            marker=1,
            kind="dataset",
            label=f"SQL over {dataset}",
            excerpt=sql_run.sql,
            dataset=dataset,
            dataset_version_id=version_ids[0] if len(version_ids) == 1 else None,
        )
    )
    gathered.evidence.append(Evidence(table.marker, summarise_table(table), 1.0))


def _gather_passages(
    gathered: _Gathered, settings: Settings, kb: str, query: str, documents: Sequence[str]
) -> None:
    conditions = {"doc_uri": resolve_documents(settings, kb, documents)} if documents else None
    passages, note = _retrieve(settings, kb, query, len(gathered.sources), conditions)
    if note:
        gathered.notes.append(note)
    gathered.passages = passages
    gathered.sources += [_document_source(passage) for passage in passages]
    for passage in passages:
        addressed = without_instructions(passage.text)[1]
        if addressed:
            quoted = addressed[0] if len(addressed[0]) <= 80 else addressed[0][:79] + "…"
            gathered.notes.append(
                f"source [{passage.marker}] ({passage.label}) holds text addressed to an AI assistant "
                f"(“{quoted}”): withheld from the model and never used as evidence"
            )


def _compose(
    gathered: _Gathered,
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


def _checked(gathered: _Gathered, text: str, question: str, on_text: Callable[[str], None] | None) -> str:
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


def _answer_style(settings: Settings, model: LLM, gathered: _Gathered) -> str:
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


def _passage_evidence(settings: Settings, question: str, passages: Sequence[Source]) -> list[Evidence]:
    """The sentences of the passages closest in meaning to the question (the embedder is already loaded)."""
    candidates = [  # text addressed to the model is never quoted as evidence
        (passage.marker, sentence)
        for passage in passages
        for sentence in split_sentences(without_instructions(passage.text)[0])
    ]
    if not candidates:
        return []
    vectors = build_embedder(settings.embedding).embed([question, *(sentence for _, sentence in candidates)])
    scores = (vectors[1:] @ vectors[0]).tolist()
    return pick_evidence(candidates, scores, limit=2, min_score=settings.answer.min_relevance)


def _history(
    catalog: Catalog, conversation_id: str | None, turns: int
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The recent turns for the answer prompt, and for the SQL prompt (questions with the SQL they ran)."""
    if conversation_id is None or turns == 0:
        return [], []
    try:
        conversation = catalog.get_conversation(conversation_id)
    except NotFoundError:
        raise NotFoundError(
            f"no conversation {conversation_id!r}; list them with `ods conversations list`"
        ) from None
    answers: list[ChatMessage] = []
    queries: list[ChatMessage] = []
    asked: str | None = None
    for message in conversation.messages:
        if message.role == "user":
            answers.append(ChatMessage("user", message.content))
            asked = message.content
        elif message.role == "assistant":
            answers.append(ChatMessage("assistant", message.content))
            if message.sql and asked is not None:
                queries += [
                    ChatMessage("user", asked),
                    ChatMessage("assistant", f"```sql\n{message.sql}\n```"),
                ]
    return recent_history(answers, max_turns=turns), recent_history(queries, max_turns=turns)


def _retrieve(
    settings: Settings,
    kb: str,
    query: str,
    first_marker: int,
    conditions: Mapping[str, FilterValue] | None = None,
) -> tuple[list[Source], str | None]:
    answer_settings = settings.answer
    retrieval = retrieve_passages(
        settings, kb, query, k=answer_settings.top_k, mode="hybrid", conditions=conditions
    )
    if not retrieval.hits:
        return [], f"knowledge base {kb!r} has no passages"
    if retrieval.best_similarity is not None and retrieval.best_similarity < answer_settings.min_relevance:
        return [], (
            f"the closest passage in {kb!r} scores {retrieval.best_similarity:.2f}, under the relevance "
            f"cut {answer_settings.min_relevance} (ODS_ANSWER__MIN_RELEVANCE)"
        )
    return [
        Source(
            marker=first_marker + offset + 1,
            text=hit.text,
            doc_uri=hit.doc_uri,
            page=hit.page,
            heading=hit.heading,
            chunk_id=hit.id,
            score=hit.score,
        )
        for offset, hit in enumerate(retrieval.hits)
    ], None


def _document_source(passage: Source) -> AnswerSource:
    excerpt = " ".join(passage.text.split())
    return AnswerSource(
        marker=passage.marker,
        kind="document",
        label=passage.label,
        excerpt=excerpt if len(excerpt) <= EXCERPT_CHARS else excerpt[: EXCERPT_CHARS - 1] + "…",
        doc_uri=passage.doc_uri,
        page=passage.page,
        heading=passage.heading,
        chunk_id=passage.chunk_id,
        score=passage.score,
    )


def _run_sql(
    settings: Settings,
    catalog: Catalog,
    model: LLM,
    question: str,
    datasets: list[str],
    history: Sequence[ChatMessage],
    database: bool = False,
) -> tuple[SqlRun, Usage, list[int]]:
    """Write SQL with the model, pass it through the guard, run it read-only with a timeout and a row cap.

    A statement the guard rejects is reported and never executed. A statement the database refuses
    (an unknown column, a type error) is shown to the model once with the error so it can repair it.
    """
    warehouse: Warehouse = (
        open_sql_database_warehouse(settings)
        if database
        else open_warehouse(settings, catalog, datasets or None)
    )
    try:
        tables = warehouse.tables()
        names = tuple(table.name for table in tables)
        version_ids = [] if database else _dataset_version_ids(catalog, tables)
        messages = build_sql_messages(question, tables, history)
        usage = Usage()
        started = time.perf_counter()
        sql_text: str | None = None
        for attempt in range(2):
            completion = model.complete(messages, max_tokens=SQL_MAX_TOKENS, temperature=0.0)
            usage += completion.usage
            sql_text = extract_sql(completion.text)
            if sql_text is None:
                return (
                    SqlRun(names, None, error="the model wrote no SQL statement", seconds=_since(started)),
                    usage,
                    version_ids,
                )
            try:
                guarded = warehouse.guard(sql_text, max_rows=settings.warehouse.max_rows)
            except SqlRejected as rejected:
                return (
                    SqlRun(
                        names,
                        sql_text,
                        error=f"the SQL was rejected and not run: {rejected}",
                        seconds=_since(started),
                    ),
                    usage,
                    version_ids,
                )
            try:
                result = warehouse.run(guarded, timeout_s=settings.warehouse.timeout_s)
            except OdsError as failed:
                if attempt == 0:
                    messages = [
                        *messages,
                        ChatMessage("assistant", f"```sql\n{sql_text}\n```"),
                        ChatMessage("user", f"That query failed: {failed}. Write a corrected query."),
                    ]
                    continue
                return (
                    SqlRun(names, guarded.sql, error=f"the query failed: {failed}", seconds=_since(started)),
                    usage,
                    version_ids,
                )
            return _sql_run(names, guarded.sql, result, started), usage, version_ids
        raise AssertionError("unreachable: the loop returns on its last attempt")
    finally:
        warehouse.close()


def _sql_run(names: tuple[str, ...], sql: str, result: QueryResult, started: float) -> SqlRun:
    return SqlRun(
        datasets=names,
        sql=sql,
        columns=tuple(result.columns),
        rows=tuple(tuple(row) for row in result.rows),
        truncated=result.truncated,
        seconds=_since(started),
    )


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)


def _dataset_version_ids(catalog: Catalog, tables: Sequence[TableDescription]) -> list[int]:
    ids = []
    for table in tables:
        name, _, version = table.dataset.partition("@")
        record = catalog.get_dataset_version(name, int(version) if version else None)
        ids.append(record.id)
    return ids


def _remember(
    catalog: Catalog,
    conversation_id: str | None,
    question: str,
    text: str,
    gathered: _Gathered,
    model_id: str | None,
    cited: Sequence[int],
) -> tuple[str, int]:
    if conversation_id is None:
        conversation_id = catalog.create_conversation(_title(question)).id
    chunk_sources = catalog.chunk_sources(source.chunk_id for source in gathered.sources if source.chunk_id)
    citations = []
    for source in gathered.sources:
        if source.marker not in cited:
            continue
        chunk = chunk_sources.get(source.chunk_id or "")
        citations.append(
            CitationRecord(
                marker=source.marker,
                chunk_id=chunk.chunk_id if chunk else None,
                document_version_id=chunk.document_version_id if chunk else None,
                dataset_version_id=source.dataset_version_id,
            )
        )
    catalog.add_message(conversation_id, "user", question)
    message = catalog.add_message(
        conversation_id,
        "assistant",
        text,
        sql=gathered.sql_run.sql if gathered.sql_run else None,
        model=model_id,
        usage=gathered.usage.as_dict(),
        citations=citations,
    )
    return conversation_id, message.id


def _title(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= 80 else words[:79] + "…"


def answer_markdown(answer: Answer) -> str:
    """The answer as a markdown report: text, sources with pages, the SQL and its result."""
    lines = [f"# {answer.question}", "", answer.text, ""]
    if answer.evidence:
        lines += ["## Evidence", ""]
        lines += [f"- [{item.marker}] {item.text}" for item in answer.evidence]
        lines.append("")
    if answer.citations:
        lines += ["## Sources", ""]
        for source in answer.citations:
            lines.append(
                f"[{source.marker}] {source.label}" + (f" — {source.doc_uri}" if source.doc_uri else "")
            )
        lines.append("")
    if answer.sql is not None:
        lines += ["## SQL", ""]
        if answer.sql.sql:
            lines += ["```sql", answer.sql.sql, "```", ""]
        if answer.sql.succeeded:
            lines += [answer.sql.table_markdown(), ""]
        if answer.sql.error:
            lines += [f"Not run: {answer.sql.error}", ""]
    for note in answer.notes:
        lines.append(f"> {note}")
    timings = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in answer.timings.items())
    lines += [
        "",
        f"_route {answer.route}; model {answer.model or 'none'}; "
        f"{answer.usage.total_tokens} tokens; {timings}_",
    ]
    return "\n".join(lines).rstrip() + "\n"
