"""`ods kb ...`: ingest a knowledge base (the ingest-documents flow), its status, verification, documents
and search."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape

from ods.cli.console import console, field_table, headed_table, shown
from ods.domain.object_keys import printable_text
from ods.domain.sync_plan import DOCUMENTS_PER_BATCH
from ods.errors import OdsError
from ods.orchestration.temporary_server import start_flow_runner

kb_app = typer.Typer(help="Ingest, inspect and search knowledge bases.", no_args_is_help=True)


@kb_app.command("ingest")
def kb_ingest(
    source: str = typer.Argument(..., help="A folder or s3://bucket/prefix of the configured object store."),
    kb: str = typer.Option(..., "--kb", help="Knowledge base name."),
    batch_size: int = typer.Option(DOCUMENTS_PER_BATCH, "--batch-size", min=1, help="Documents per task."),
) -> None:
    """Bring a knowledge base in line with its source (runs the ingest-documents flow)."""
    from ods.domain.names import check_name

    check_name("knowledge base", kb)  # before a flow run, a model or a catalog row
    runner = start_flow_runner()
    from flows.ingest_documents import ingest_documents

    with _ingest_progress(kb):
        result = runner.run(ingest_documents, source, kb, batch_size)
    console.print(
        f"[green]{kb}[/green]: {result.indexed} indexed ({result.chunks} chunks), "
        f"{result.unchanged} unchanged, {result.quarantined} quarantined, {result.deleted} deleted"
    )
    for item in result.quarantined_documents:
        uri, detail = printable_text(item["uri"]), printable_text(item["detail"])
        console.print(f"  quarantined {uri}: {detail}", markup=False)


@contextmanager
def _ingest_progress(kb: str) -> Iterator[None]:
    """A documents progress bar fed by the structured log records of the ingest tasks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ods.stages.ingest import PROGRESS_FIELD

    progress = Progress(
        TextColumn(f"ingesting {kb}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    bar = progress.add_task("documents", total=None)

    class ProgressHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            update = getattr(record, PROGRESS_FIELD, None)
            if not isinstance(update, dict) or update.get("kb") != kb:
                return
            if "total" in update:
                progress.update(bar, total=update["total"], completed=update.get("done", 0))
            else:
                progress.advance(bar, update.get("advance", 0))

    handler = ProgressHandler()
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addHandler(handler)
    try:
        with progress:
            yield
    finally:
        task_logger.removeHandler(handler)


@kb_app.command("status")
def kb_status(kb: str = typer.Argument(..., help="Knowledge base name.")) -> None:
    """Documents and versions per status, chunks, embedding model, collection, where dense and BM25 search
    run (BM25 with which analyzer) and how hybrid search fuses them.

    The chunks are the catalog's chunks of indexed versions, which the index holds too (``ods kb verify``
    compares them id for id); the dense snapshot line shows the index's own count on a Milvus Lite file.
    """
    from ods.factories import open_catalog
    from ods.settings import get_settings
    from ods.stages.ingest import bm25_search_source, dense_search_source
    from ods.stages.retrieve import describe_fusion

    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
        counts = catalog.knowledge_base_counts(kb)

    def by_status(counted: dict[str, int]) -> str:
        return ", ".join(f"{count} {status}" for status, count in sorted(counted.items())) or "none"

    table = field_table(
        f"knowledge base {shown(kb)}",
        (
            ("source", record.source_uri),
            ("embedding model", f"{record.embedding_model} ({record.embedding_dim} dims)"),
            ("collection", record.collection_name),
            ("documents", by_status(counts.documents)),
            ("versions", by_status(counts.versions)),
            ("chunks", counts.indexed_chunks),
            ("dense search", dense_search_source(settings, record)),
            ("BM25 search", bm25_search_source(settings, record)),
            ("hybrid fusion", describe_fusion(settings.search)),
        ),
    )
    console.print(table)


@kb_app.command("verify")
def kb_verify(
    kb: str = typer.Argument(..., help="Knowledge base name."),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Delete chunks the catalog does not know from the index, and mark documents whose chunks are "
        "missing deleted so the next ingest indexes them again.",
    ),
) -> None:
    """Compare the catalog's chunks of a knowledge base with its index, id for id; exit 1 on drift."""
    from ods.settings import get_settings
    from ods.stages.ingest import verify_knowledge_base

    verification = verify_knowledge_base(get_settings(), kb, repair=repair)
    for line in verification.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not verification.drift.ok and not repair:
        raise typer.Exit(1)


@kb_app.command("documents")
def kb_documents(
    kb: str = typer.Argument(..., help="Knowledge base name."),
    status: str | None = typer.Option(None, "--status", help="indexed, quarantined or deleted."),
) -> None:
    """The documents of a knowledge base with status, chunks and reason."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    if status not in (None, "indexed", "quarantined", "deleted"):
        raise OdsError(f"--status {status!r} is not one of indexed, quarantined, deleted")
    with open_catalog(get_settings()) as catalog:
        documents = catalog.documents(kb, status)  # type: ignore[arg-type]
    table = headed_table(
        f"{shown(kb)}: {len(documents)} document(s)",
        ("document", "status", "chunks", "parser", "reason"),
        overflow="fold",
    )
    for document in documents:  # a URI or reason never reaches the terminal with a control character
        table.add_row(
            escape(printable_text(document.uri)),
            document.status,
            str(document.chunk_count),
            escape(document.parser or ""),
            escape(printable_text(document.reason or "")),
        )
    console.print(table)


@kb_app.command("search")
def kb_search(
    query: str = typer.Argument(..., help="What to look for."),
    kb: str = typer.Option(..., "--kb", help="Knowledge base name."),
    k: int = typer.Option(5, "-k", min=1, max=100, help="How many chunks."),
    mode: str = typer.Option("hybrid", "--mode", help="dense, bm25 or hybrid."),
    document: Annotated[
        list[str] | None,
        typer.Option("--document", help="Only this document (URI or file name); repeat for more."),
    ] = None,
    heading: Annotated[
        list[str] | None,
        typer.Option("--heading", help="Only chunks under this section heading (exact); repeat for more."),
    ] = None,
    page: Annotated[
        list[int] | None,
        typer.Option("--page", min=1, help="Only chunks on this PDF page (from 1); repeat for more."),
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop hits scoring below this.")
    ] = None,
) -> None:
    """Ranked chunks with document, page, heading and score (no Prefect run: answers at once)."""
    from ods.settings import get_settings
    from ods.stages.retrieve import retrieve_passages, search_conditions

    if mode not in ("dense", "bm25", "hybrid"):
        raise OdsError(f"--mode {mode!r} is not one of dense, bm25, hybrid")
    settings = get_settings()
    conditions = search_conditions(settings, kb, documents=document, headings=heading, pages=page)
    retrieval = retrieve_passages(
        settings,
        kb,
        query,
        k=k,
        mode=mode,  # type: ignore[arg-type]
        conditions=conditions,
    )
    hits = [hit for hit in retrieval.hits if min_score is None or hit.score >= min_score]
    if not hits:
        console.print("no matching chunk")
        console.print(retrieval.how, style="dim", markup=False, highlight=False)
        return
    table = headed_table(
        f"{shown(kb)}: {mode} search for {query!r}",
        ("#", "score", "document", "page", "heading", "text"),
        overflow="fold",
    )
    for rank, hit in enumerate(hits, start=1):
        table.add_row(
            str(rank),
            f"{hit.score:.4f}",
            hit.doc_uri.rsplit("/", 1)[-1],
            "" if hit.page is None else str(hit.page),
            hit.heading or "",
            hit.text[:300],
        )
    console.print(table)
    console.print(retrieval.how, style="dim", markup=False, highlight=False)
