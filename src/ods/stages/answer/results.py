"""What an answer is: its text, the sources it cites, the SQL it ran, and its markdown report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ods.domain.answering import ClaimCheck, Evidence, Route, Source, TableResult, render_table, sources_used
from ods.domain.chat import Usage


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
    notes: tuple[str, ...] = ()
    """What was changed in the model's SQL before it ran (a LIMIT dropped), for the answer's notes."""

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
    """A citation as JSON: the fields of its source, in their order, but the excerpt and the version id."""
    return {
        key: value for key, value in asdict(source).items() if key not in ("excerpt", "dataset_version_id")
    }


@dataclass
class Gathered:
    """What one answer collected before writing it: the query result, the passages, notes and cost."""

    sql_run: SqlRun | None = None
    tables: list[TableResult] = field(default_factory=list)
    passages: list[Source] = field(default_factory=list)
    sources: list[AnswerSource] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    claims: list[ClaimCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


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
