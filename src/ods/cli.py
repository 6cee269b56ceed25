"""The `ods` command.

Batch commands run the same Prefect flows a deployment runs; interactive ones call the library
directly. Every failure the user can act on is an :class:`~ods.errors.OdsError`, printed as one line.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ods.cli_answers import ask, chat, conversations_app
from ods.cli_events import events_app
from ods.cli_models import models_app, models_train
from ods.cli_prefect import OUTPUT, prefect_app, start_flow_runner
from ods.domain.names import display_name
from ods.domain.object_keys import printable_text
from ods.domain.sync_plan import DOCUMENTS_PER_BATCH
from ods.errors import OdsError

app = typer.Typer(
    name="ods",
    help="ONE-DATA-STUDIO: raw files to trained, served models and grounded answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
datasets_app = typer.Typer(help="Prepare, list and inspect dataset versions.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
kb_app = typer.Typer(help="Ingest, inspect and search knowledge bases.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.command("ask")(ask)
app.command("chat")(chat)
app.add_typer(conversations_app, name="conversations")
app.add_typer(events_app, name="events")
app.add_typer(models_app, name="models")
app.add_typer(prefect_app, name="prefect")

console = Console()
error_console = Console(stderr=True)


@app.callback()
def options(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Prefect's logs and the traceback of an error."
    ),
) -> None:
    """ONE-DATA-STUDIO: raw files to trained, served models and grounded answers."""
    OUTPUT.verbose = verbose
    OUTPUT.quiet_prefect = not verbose


@app.command()
def init() -> None:
    """Create ODS_HOME, migrate the catalog, and prepare the object store and vector index."""
    from ods.stages.setup import initialise

    for line in initialise():
        console.print(f"[green]✓[/green] {line}")


@app.command()
def doctor(
    deep: bool = typer.Option(
        False,
        "--deep",
        help="Also load the models and compare every knowledge base's catalog with its index (slower).",
    ),
) -> None:
    """Check every configured component; exit 1 if any is not OK."""
    from ods.settings import get_settings
    from ods.stages.health import run_checks

    results = run_checks(get_settings(), deep=deep)
    table = Table(title=f"ods doctor (profile {get_settings().profile})")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("s", justify="right")
    colours = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for result in results:
        status = f"[{colours[result.status]}]{result.status}[/{colours[result.status]}]"
        table.add_row(result.component, status, escape(result.detail), f"{result.seconds:.2f}")
    console.print(table)
    failed = [result.component for result in results if not result.ok]
    if failed:
        error_console.print(f"error: {len(failed)} component(s) failed: {', '.join(failed)}")
        raise typer.Exit(1)


@config_app.command("show")
def config_show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective settings, secrets masked."""
    from ods.settings import get_settings

    data = get_settings().masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(title="ods settings (ODS_* environment, .env)")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for name, value in _flatten(data):
        table.add_row(name, "" if value is None else str(value))
    console.print(table)


@datasets_app.command("prepare")
def datasets_prepare(
    spec: str = typer.Argument(..., help="Dataset spec (YAML): a path or s3://bucket/key."),
    source: str | None = typer.Option(
        None, "--source", help="Raw table to use instead of the spec's source.uri."
    ),
) -> None:
    """Clean, validate and register a dataset version (runs the prepare-dataset flow)."""
    runner = start_flow_runner()
    from flows.prepare_dataset import prepare_dataset

    result = runner.run(prepare_dataset, spec, source)
    console.print(
        f"[green]registered[/green] {result['dataset']}@{result['version']}: {result['rows']} rows at {result['uri']}"
    )
    if result.get("card_uri"):
        console.print(f"dataset card: {result['card_uri']}")


@datasets_app.command("list")
def datasets_list() -> None:
    """Every dataset with its newest registered version."""
    from ods.factories import open_catalog
    from ods.settings import get_settings

    with open_catalog(get_settings()) as catalog:
        datasets = catalog.list_datasets()
    table = Table(title="datasets")
    for column in ("name", "latest", "versions", "description"):
        table.add_column(column)
    for dataset in datasets:
        latest = "-" if dataset.latest_version is None else str(dataset.latest_version)
        table.add_row(_shown(dataset.name), latest, str(dataset.version_count), dataset.description or "")
    console.print(table)


@datasets_app.command("show")
def datasets_show(ref: str = typer.Argument(..., help="NAME or NAME@VERSION.")) -> None:
    """Schema, profile, lineage and validation of a dataset version."""
    from ods.domain.refs import parse_dataset_ref
    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.prepare import card_uri

    name, number = parse_dataset_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_dataset_version(name, number)
        runs = catalog.validation_runs(version.id)
    console.print(
        f"[bold]{version.dataset_name}@{version.version}[/bold] {version.status}: {version.row_count} rows"
    )
    lineage = Table(title="lineage", show_header=False)
    for field, value in (
        ("stored at", version.uri),
        ("content sha256", version.content_hash),
        ("source", version.source_uri),
        ("source etag", version.source_etag),
        ("source sha256", version.source_sha256),
        ("spec hash", version.spec_hash),
        ("flow run", version.flow_run_id),
        ("created", version.created_at.isoformat()),
        ("card", card_uri(build_object_store(settings), version)),
        ("reason", version.reason),
    ):
        lineage.add_row(field, "" if value is None else str(value))
    console.print(lineage)
    schema = Table(title="schema and profile")
    for column in ("column", "arrow type", "type", "nulls", "distinct", "min", "max", "pii"):
        schema.add_column(column)
    profile = version.profile.get("columns", {})
    for column in version.schema.get("columns", []):
        stats = profile.get(column["name"], {})
        schema.add_row(
            column["name"],
            column["type"],
            str(stats.get("dtype", "")),
            f"{100 * float(stats.get('null_rate') or 0):.1f}%",
            str(stats.get("distinct_count", "")),
            str(stats.get("min", "")),
            str(stats.get("max", "")),
            str(stats.get("pii_kind") or ""),
        )
    console.print(schema)
    for run in runs:
        results = Table(title=f"validation run {run.id}: {'passed' if run.success else 'FAILED'}")
        for column in ("expectation", "column", "success", "details"):
            results.add_column(column)
        for row in run.results.get("expectations", []):
            results.add_row(
                row["expectation"], str(row.get("column") or ""), str(row["success"]), row["details"]
            )
        console.print(results)
        if run.quarantine_uri:
            console.print(f"quarantined rows: {run.quarantine_uri}")


@datasets_app.command("head")
def datasets_head(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    rows: int = typer.Option(10, "-n", "--rows", min=1, help="How many rows to show."),
) -> None:
    """The first rows of a dataset version."""
    from ods.domain.refs import parse_dataset_ref
    from ods.factories import build_object_store, open_catalog
    from ods.settings import get_settings
    from ods.stages.prepare import head_rows

    name, number = parse_dataset_ref(ref)
    settings = get_settings()
    with open_catalog(settings) as catalog:
        version = catalog.get_dataset_version(name, number)
    frame = head_rows(build_object_store(settings), version.uri, rows)
    table = Table(
        title=f"{version.dataset_name}@{version.version} (first {len(frame)} of {version.row_count} rows)"
    )
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for record in frame.itertuples(index=False):
        table.add_row(*("" if value is None else str(value) for value in record))
    console.print(table)


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
        f"[green]{kb}[/green]: {result['indexed']} indexed ({result['chunks']} chunks), "
        f"{result['unchanged']} unchanged, {result['quarantined']} quarantined, {result['deleted']} deleted"
    )
    for item in result["quarantined_documents"]:
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
    """Documents and versions per status, chunks, embedding model, collection and where dense search runs.

    The chunks are the catalog's chunks of indexed versions, which the index holds too (``ods kb verify``
    compares them id for id); the dense snapshot line shows the index's own count on a Milvus Lite file.
    """
    from ods.factories import open_catalog
    from ods.settings import get_settings
    from ods.stages.ingest import dense_search_source

    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = catalog.get_knowledge_base(kb)
        counts = catalog.knowledge_base_counts(kb)

    def by_status(counted: dict[str, int]) -> str:
        return ", ".join(f"{count} {status}" for status, count in sorted(counted.items())) or "none"

    table = Table(title=f"knowledge base {_shown(kb)}", show_header=False)
    for field, value in (
        ("source", record.source_uri),
        ("embedding model", f"{record.embedding_model} ({record.embedding_dim} dims)"),
        ("collection", record.collection_name),
        ("documents", by_status(counts.documents)),
        ("versions", by_status(counts.versions)),
        ("chunks", counts.indexed_chunks),
        ("dense search", dense_search_source(settings, record)),
    ):
        table.add_row(field, "" if value is None else str(value))
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
    table = Table(title=f"{_shown(kb)}: {len(documents)} document(s)")
    for column in ("document", "status", "chunks", "parser", "reason"):
        table.add_column(column, overflow="fold")
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
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop hits scoring below this.")
    ] = None,
) -> None:
    """Ranked chunks with document, page, heading and score (no Prefect run: answers at once)."""
    from ods.settings import get_settings
    from ods.stages.retrieve import resolve_documents, search_knowledge_base

    if mode not in ("dense", "bm25", "hybrid"):
        raise OdsError(f"--mode {mode!r} is not one of dense, bm25, hybrid")
    settings = get_settings()
    conditions = {"doc_uri": resolve_documents(settings, kb, document)} if document else None
    hits = search_knowledge_base(
        settings,
        kb,
        query,
        k=k,
        mode=mode,  # type: ignore[arg-type]
        conditions=conditions,
        min_score=min_score,
    )
    if not hits:
        console.print("no matching chunk")
        return
    table = Table(title=f"{_shown(kb)}: {mode} search for {query!r}")
    for column in ("#", "score", "document", "page", "heading", "text"):
        table.add_column(column, overflow="fold")
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


@app.command()
def demo() -> None:
    """Run the whole platform path on the embedded defaults."""
    from ods.settings import get_settings
    from ods.stages.sample_data import write_policy_documents, write_sales_example

    init()
    examples = get_settings().home / "examples"
    _, spec = write_sales_example(examples)
    datasets_prepare(str(spec), None)
    datasets_head("sales", rows=5)
    models_train("sales", target="returned")
    kb_ingest(
        str(write_policy_documents(examples / "documents")), kb="policies", batch_size=DOCUMENTS_PER_BATCH
    )
    kb_search("How long do customers have to return a product?", kb="policies", k=3, mode="hybrid")
    for question, kb, datasets in (
        ("How long do customers have to return a product?", "policies", None),
        ("How many orders were delivered in each region?", None, ["sales"]),
    ):
        console.rule(f"ods ask {question!r}")
        ask(question, kb=kb, dataset=datasets, conversation=None, mode="auto", as_json=False)
    doctor(deep=True)


def _shown(name: str) -> str:
    """A stored or given name as Rich markup: escaped (``display_name``) and with no markup of its own."""
    return escape(display_name(name))


def _flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def main() -> None:
    """Console-script entry point: one-line errors (the traceback too with --verbose), non-zero exit codes."""
    try:
        app()
    except OdsError as error:
        if OUTPUT.verbose:
            traceback.print_exception(error)
        error_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
