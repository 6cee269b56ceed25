"""`ods ask`, `ods chat` and `ods conversations`: questions answered with citations, kept as conversations.

These call the library directly (no Prefect run), so the model is loaded once per process and the
answer streams to the terminal as it is written.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ods.cli.console import console, headed_table
from ods.errors import OdsError

if TYPE_CHECKING:
    from ods.domain.answering import Mode
    from ods.settings import Settings
    from ods.stages.answer import Answer

conversations_app = typer.Typer(help="List, show and delete conversations.", no_args_is_help=True)

MODES = ("auto", "rag", "sql", "both")
KB_HELP = "Knowledge base to answer from (documents)."
DATASET_HELP = (
    "Registered dataset to query with SQL (NAME or NAME@VERSION); repeat for more; 'all' for every one."
)
MODE_HELP = "auto (route by the question), rag, sql or both."
DATABASE_HELP = "Query the configured read-only SQL database (ODS_WAREHOUSE__URL) instead of datasets."
DOCUMENT_HELP = "Search only this document of the knowledge base (URI or file name); repeat for more."


@dataclass(frozen=True)
class _Scope:
    """What ``ask`` and ``chat`` answer from, as their options gave it: ``--kb``, ``--dataset``, ``--mode``."""

    kb: str | None
    dataset: list[str] | None
    mode: str

    def answer(self, settings: Settings, question: str, conversation: str | None, **options: Any) -> Answer:
        """``answer_question`` over this scope; ``options`` are its other keyword arguments."""
        from ods.stages.answer import answer_question

        return answer_question(
            settings,
            question,
            kb=self.kb,
            datasets=_datasets(self.dataset),
            conversation_id=conversation,
            mode=_mode(self.mode),
            **options,
        )


def _datasets(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [] if any(value == "all" for value in values) else list(values)


def _mode(value: str) -> Mode:
    if value not in MODES:
        raise OdsError(f"--mode {value!r} is not one of {', '.join(MODES)}")
    return value  # type: ignore[return-value]


def ask(
    question: str = typer.Argument(..., help="The question, in plain words."),
    kb: str | None = typer.Option(None, "--kb", help=KB_HELP),
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help=DATASET_HELP)] = None,
    conversation: str | None = typer.Option(None, "--conversation", help="Continue this conversation id."),
    mode: str = typer.Option("auto", "--mode", help=MODE_HELP),
    document: Annotated[list[str] | None, typer.Option("--document", help=DOCUMENT_HELP)] = None,
    database: Annotated[bool, typer.Option("--database", help=DATABASE_HELP)] = False,
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON (no streaming)."),
) -> None:
    """Answer a question with citations from documents and/or datasets; streams the answer, then sources."""
    from ods.settings import get_settings

    stream = None if as_json else _stream_to_stdout
    scope = _Scope(kb, dataset, mode)
    result = scope.answer(
        get_settings(), question, conversation, documents=document, database=database, on_text=stream
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    sys.stdout.write("\n")
    print_answer_details(result)
    if kb is not None and result.route != "sql":
        print_search_line(get_settings(), kb)


def chat(
    kb: str | None = typer.Option(None, "--kb", help=KB_HELP),
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help=DATASET_HELP)] = None,
    conversation: str | None = typer.Option(None, "--conversation", help="Continue this conversation id."),
    mode: str = typer.Option("auto", "--mode", help=MODE_HELP),
) -> None:
    """Chat interactively: each question sees the recent turns; an empty line, 'exit' or Ctrl-D ends."""
    from ods.factories import open_llm
    from ods.settings import get_settings

    settings = get_settings()
    scope = _Scope(kb, dataset, mode)
    model = open_llm(settings)
    console.print("[dim]ask a question; an empty line or 'exit' ends the chat[/dim]")
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if question in ("", "exit", "quit"):
            break
        sys.stdout.write("ods> ")
        try:
            result = scope.answer(settings, question, conversation, llm=model, on_text=_stream_to_stdout)
        except OdsError as error:
            console.print(f"\n[red]error:[/red] {escape(str(error))}")
            continue
        sys.stdout.write("\n")
        print_answer_details(result)
        conversation = result.conversation_id
    if conversation:
        console.print(f"conversation {conversation} (continue with --conversation {conversation})")


def _stream_to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def print_search_line(settings: Settings, kb: str) -> None:
    """How the knowledge base's passages were searched: the hybrid fusion and where BM25 ran, with which
    analyzer (read from disk, no index opened)."""
    from ods.factories import open_catalog
    from ods.stages.ingest import bm25_search_source
    from ods.stages.retrieve import describe_fusion

    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
    words = bm25_search_source(settings, record)
    console.print(
        f"search: hybrid, {describe_fusion(settings.search)}; BM25 {words}", style="dim", markup=False
    )


def print_answer_details(result: Answer) -> None:
    """Sources, SQL and result table, notes, and what the answer cost — printed after the answer."""
    if result.model is not None:  # a quoted answer already is its evidence
        for item in result.evidence:
            console.print(
                f"  evidence [{item.marker}]: {item.text}", style="green", markup=False, highlight=False
            )
    if result.citations:
        table = headed_table("sources", ("#", "source", "excerpt"), overflow="fold", title_justify="left")
        for source in result.citations:
            where = source.label if source.kind == "dataset" else f"{source.label}\n{source.doc_uri}"
            table.add_row(f"[{source.marker}]", where, source.excerpt)
        console.print(table, markup=False)
    if result.sql is not None:
        if result.sql.sql:
            console.print("SQL:", style="bold")
            console.print(result.sql.sql, markup=False, highlight=False)
        if result.sql.succeeded:
            rows = headed_table(
                f"result ({len(result.sql.rows)} row(s){', cut at the row cap' if result.sql.truncated else ''})",
                result.sql.columns,
                overflow="fold",
            )
            for row in result.sql.rows[:20]:
                rows.add_row(*("" if value is None else str(value) for value in row))
            console.print(rows)
    for note in result.notes:
        console.print(f"note: {note}", style="yellow", markup=False)
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.timings.items())
    console.print(
        f"[dim]{result.route} · {result.model or 'quoted evidence'} · {result.usage.total_tokens} tokens · "
        f"{timings} · conversation {result.conversation_id}[/dim]"
    )


@conversations_app.command("list")
def conversations_list() -> None:
    """Conversations, most recently active first."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        conversations = catalog.list_conversations()
    table = headed_table(f"{len(conversations)} conversation(s)", ("id", "title", "updated"), overflow="fold")
    for item in conversations:
        table.add_row(item.id, item.title, item.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@conversations_app.command("show")
def conversations_show(conversation: str = typer.Argument(..., help="Conversation id.")) -> None:
    """Every message of a conversation, with the SQL it ran and the sources it cited."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        record = catalog.get_conversation(conversation)
        chunk_ids = [c.chunk_id for m in record.messages for c in m.citations if c.chunk_id]
        sources = catalog.chunk_sources(chunk_ids)
    console.print(f"[bold]{escape(record.title)}[/bold]  ({record.id}, {len(record.messages)} messages)")
    for message in record.messages:
        stamp = message.created_at.strftime("%Y-%m-%d %H:%M:%S")
        console.print(
            f"\n[bold]{message.role}[/bold] [dim]{stamp}{' · ' + message.model if message.model else ''}[/dim]"
        )
        console.print(message.content, markup=False, highlight=False)
        if message.sql:
            console.print("SQL: " + message.sql, markup=False, highlight=False, style="cyan")
        for citation in message.citations:
            chunk = sources.get(citation.chunk_id or "")
            if chunk is not None:
                page = f" page {chunk.page}" if chunk.page is not None else ""
                where = f"{chunk.doc_uri}{page}"
            elif citation.dataset_version_id is not None:
                where = f"dataset version #{citation.dataset_version_id}"
            else:
                where = "(source no longer indexed)"
            console.print(f"  [{citation.marker}] {where}", markup=False, highlight=False)


@conversations_app.command("delete")
def conversations_delete(
    conversation: str = typer.Argument(..., help="Conversation id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a conversation and its messages."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    if not yes and not typer.confirm(f"delete conversation {conversation} and all its messages?"):
        raise typer.Exit(1)
    with open_catalog(get_settings()) as catalog:
        catalog.delete_conversation(conversation)
    console.print(f"deleted conversation {conversation}")
