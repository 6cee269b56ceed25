"""Benchmark of ingest_documents against bare embedding of the same chunks, measured in the same run.

Generates a deterministic corpus (default 2,000 documents, about 20,000 chunks at the flow's 200-token chunk
size): Markdown with headings, plain text and HTML pages of English-like prose from a fixed vocabulary, sizes
varied so chunk counts vary. Then measures:

- baseline: bare ``model.encode(texts)`` of the same cached SentenceTransformer over the same chunk texts
  (re-chunked here with the flow's own functions), once with its default batch size (32) and once with
  the fastest of 16/32/64 texts per batch on this machine (tried on a 1,000-chunk sample): the physical
  limit;
- the ``ingest-documents`` flow end to end (Prefect server and model already warm): chunks/s and the
  per-stage seconds of its summary (read / parse / embed / index);
- the re-ingest of the unchanged corpus in a new process (only the flow call is timed there);
- peak memory of the flow above the process's resting size, for N/4 and N documents (fresh ODS_HOME each;
  each run's Milvus Lite server is stopped after it, as a flow run's process ends with it);
- the same for M/4 and M documents (default M = 1,600, so that both runs fill the three-batch pipeline) with Milvus Lite run as a server in its own process
  (``python -m milvus_lite server``, reached through ``ODS_MILVUS__URI`` like any Milvus server), in a fresh
  process per run: the pipeline's own working memory (the streaming target) apart from the database's.

Targets: flow throughput >= 0.95x bare encode (LlamaIndex's IngestionPipeline reaches ~0.92 here);
re-ingest of an unchanged corpus <= 1% of the first ingest; peak memory flat in corpus size.

    .venv/bin/python benchmarks/ingest.py --docs 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peak_memory import PeakMemory

REPO_ROOT = Path(__file__).resolve().parents[1]

_VOCABULARY = """
account action address agent amount analysis answer approach area article audit balance bank basis batch
benefit bill board body branch budget buffer building business buyer cable call capacity card care case
cash catalog center change channel charge check claim class client cluster code column comment company
contract control cost council country course court credit customer cycle damage data date deadline deal
debt decision delivery demand department deposit design detail device director discount dispute document
driver duty employee energy engine entry equipment error estimate event evidence exchange expense factor
failure fee field file finance firm flow form fund goal grade group growth guide hardware health history
holder income index inquiry insurance interest invoice issue item job journal key label labour language
layer lease ledger level licence limit line loan location log machine manager margin market material
measure meeting member memory message method metric model module month network node notice number object
offer office operator option order owner package page panel partner party payment period permit phase
plan platform policy pool portfolio position price priority process product profile program project
property proposal provider purchase quality quarter query quota rate reason receipt record refund region
register release report request reserve resource response result retailer return revenue review right
risk role rule salary sale schedule scheme score sector security segment seller series server service
session setting share shipment signal site source staff stage standard statement status stock storage
store strategy supplier supply support system table target task tax team term test ticket time total
trade transfer trend unit update user value vendor version volume warehouse warranty week worker year
accept adjust allow apply approve arrange assess assign avoid build calculate cancel collect compare
complete confirm connect consider contain create define deliver describe develop display divide enable
ensure establish examine expect explain export extend follow handle identify import improve include
increase inform install keep limit maintain manage measure monitor move notify obtain operate prepare
prevent process produce protect provide publish receive record reduce refer remove replace report require
reserve resolve restore review schedule select send share ship store submit supply track transfer update
verify annual available current daily different direct early effective external final financial formal
general global internal large late legal local main major manual minor monthly new normal official old
open overall personal physical previous primary private public quarterly recent regional regular related
relevant remote required secure separate several significant simple single small special specific
standard strong successful suitable technical temporary total typical usual valid various weekly
"""
WORDS = _VOCABULARY.split()
_FUNCTION_WORDS = (
    "the a an of to in for on with by from at as and or but if when which that this each every all"
)
FUNCTION_WORDS = _FUNCTION_WORDS.split()
MEDIAN_WORDS_PER_DOCUMENT = 820  # log-normal sizes: ~10 chunks of <= 200 tokens per document on average


# --- 1. corpus -----------------------------------------------------------------------------------------


def sentence(rng: random.Random) -> str:
    words = [
        rng.choice(FUNCTION_WORDS) if rng.random() < 0.3 else rng.choice(WORDS)
        for _ in range(rng.randint(7, 22))
    ]
    if rng.random() < 0.15:
        words.insert(rng.randint(1, len(words) - 1), str(rng.randint(2, 2_000)))
    if rng.random() < 0.2:
        words[rng.randint(0, len(words) - 2)] += ","
    return " ".join(words).capitalize() + rng.choice(".......?!")


def paragraph(rng: random.Random, words: int) -> str:
    sentences: list[str] = []
    while words > 0:
        sentences.append(sentence(rng))
        words -= sentences[-1].count(" ") + 1
    return " ".join(sentences)


def title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).capitalize()


def document_sections(rng: random.Random) -> list[tuple[str, list[str]]]:
    """Headings with their paragraphs; total words log-normal around ``MEDIAN_WORDS_PER_DOCUMENT``."""
    total = int(min(max(rng.lognormvariate(0, 0.6) * MEDIAN_WORDS_PER_DOCUMENT, 80), 9_000))
    sections: list[tuple[str, list[str]]] = []
    while total > 0:
        section_words = min(total, rng.randint(150, 700))
        paragraphs: list[str] = []
        remaining = section_words
        while remaining > 0:
            length = min(remaining, rng.randint(40, 160))
            paragraphs.append(paragraph(rng, length))
            remaining -= length
        sections.append((title(rng), paragraphs))
        total -= section_words
    return sections


def render(kind: str, sections: list[tuple[str, list[str]]], rng: random.Random) -> str:
    if kind == "md":
        parts = [f"# {sections[0][0]}"]
        for number, (heading, paragraphs) in enumerate(sections):
            if number:
                parts.append(f"{'#' * rng.choice((2, 2, 3))} {heading}")
            for text in paragraphs:
                if rng.random() < 0.1:
                    parts.append("\n".join(f"- {sentence(rng)}" for _ in range(rng.randint(2, 5))))
                parts.append(text)
        return "\n\n".join(parts) + "\n"
    if kind == "html":
        body = []
        for number, (heading, paragraphs) in enumerate(sections):
            body.append(f"<h{1 if number == 0 else 2}>{heading}</h{1 if number == 0 else 2}>")
            body.extend(f"<p>{text}</p>" for text in paragraphs)
        return (
            f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{sections[0][0]}</title>"
            "<style>body { font-family: sans-serif; }</style><script>var tracking = 1;</script></head>\n"
            "<body><nav><a href='/'>Home</a></nav>\n" + "\n".join(body) + "\n</body></html>\n"
        )
    return "\n\n".join(text for _, paragraphs in sections for text in paragraphs) + "\n"


def write_corpus(folder: Path, documents: int, seed: int = 20_260_101) -> int:
    """``documents`` files (half .md, a quarter each .txt and .html) under ``folder``; returns bytes written."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    written = 0
    for number in range(documents):
        kind = ("md", "txt", "md", "html")[number % 4]
        path = folder / f"area-{number % 16:02d}" / f"doc-{number:05d}.{kind}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = render(kind, document_sections(rng), rng).encode("utf-8")
        path.write_bytes(data)
        written += len(data)
    return written


# --- 2. environment ------------------------------------------------------------------------------------


def isolate(workdir: Path) -> None:
    """Point ods and Prefect at throw-away homes; must run before either is imported."""
    os.environ["ODS_HOME"] = str(workdir / "home-main")
    os.environ["PREFECT_HOME"] = str(workdir / "prefect")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.pop("PREFECT_API_URL", None)
    sys.path.insert(0, str(REPO_ROOT))


def warm_up() -> Any:
    """Start the temporary Prefect server and load the embedding model, so neither start-up is counted."""
    from prefect import flow

    from ods.adapters.embedder import build_embedder
    from ods.settings import get_settings

    @flow
    def warm_up_flow() -> None:
        """Starts the temporary Prefect server."""

    warm_up_flow()
    embedder = build_embedder(get_settings().embedding)
    embedder.embed(["warm up the model once"] * 8)
    return embedder


def use_home(home: Path) -> None:
    """Switch ods to a fresh ODS_HOME (settings are cached per process)."""
    from ods.settings import get_settings

    os.environ["ODS_HOME"] = str(home)
    get_settings.cache_clear()


# --- 3. the flow ---------------------------------------------------------------------------------------


def run_flow(folder: Path, batch_size: int, memory: PeakMemory) -> tuple[dict[str, Any], float]:
    from flows.ingest_documents import ingest_documents

    with memory.watch():
        started = time.perf_counter()
        summary = ingest_documents(str(folder), "bench", batch_size=batch_size)
        seconds = time.perf_counter() - started
    return summary, seconds


# --- 4. baseline ---------------------------------------------------------------------------------------


def chunk_texts(folder: Path, embedder: Any) -> list[str]:
    """The chunks the flow indexes, made by the same parse and chunk functions (in this process)."""
    from ods.adapters.document_parsers import parse_document
    from ods.domain.chunking import chunk_sections
    from ods.ingestion import MAX_CHUNK_TOKENS, OVERLAP_TOKENS, bounded_token_counts

    texts: list[str] = []
    for path in sorted(folder.rglob("*.*")):
        parsed = parse_document(path.read_bytes(), path.name)
        chunks = chunk_sections(
            parsed.sections,
            max_tokens=MAX_CHUNK_TOKENS,
            overlap_tokens=OVERLAP_TOKENS,
            count_tokens=lambda batch: bounded_token_counts(embedder, batch),
        )
        texts.extend(chunk.text for chunk in chunks)
    return texts


DEFAULT_ENCODE_BATCH = 32  # SentenceTransformer.encode's default batch_size
TRIED_ENCODE_BATCHES = (16, 32, 64)


def bare_encode(texts: list[str], embedder: Any, batch_size: int = DEFAULT_ENCODE_BATCH) -> float:
    """Seconds for ``model.encode(texts, batch_size=...)`` of the flow's cached model."""
    model = embedder.model
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    return time.perf_counter() - started


def fastest_encode_batch(
    texts: list[str], embedder: Any, sample: int = 1_000
) -> tuple[int, dict[int, float]]:
    """The batch size of ``TRIED_ENCODE_BATCHES`` that encodes an even sample of ``texts`` fastest."""
    picked = texts[:: max(len(texts) // sample, 1)][:sample]
    bare_encode(picked[:64], embedder)  # threads and caches warm
    seconds = {size: bare_encode(picked, embedder, size) for size in TRIED_ENCODE_BATCHES}
    return min(seconds, key=lambda size: seconds[size]), seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def milvus_lite_server(data_dir: Path) -> Iterator[tuple[str, int]]:
    """Milvus Lite's own gRPC server in a separate process: (its URI, its pid)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Milvus Lite server did not start (exit code {server.poll()})")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def resident_peak(pid: int) -> int:
    """A process's resident high-water mark (Linux's VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


MEMORY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[3])
from ingest import warm_up
from peak_memory import PeakMemory
from flows.ingest_documents import ingest_documents

warm_up()
memory = PeakMemory()
resting = memory.resting()
with memory.watch():
    summary = ingest_documents(sys.argv[1], "bench", batch_size=int(sys.argv[2]))
print(json.dumps({"peak": memory.peak - resting, "resting": resting, "chunks": summary["chunks"]}))
"""


def pipeline_memory(workdir: Path, docs: int, batch_size: int) -> list[dict[str, Any]]:
    """Peak memory of the flow for docs/4 and docs documents, each in a fresh process (model loaded and
    Prefect started first), with the Milvus Lite database in a server process of its own; and that
    server's resident peak."""
    measured = []
    for count in (max(docs // 4, 1), docs):
        folder = workdir / f"corpus-memory-{count}"
        write_corpus(folder, count, seed=count)
        print(f"ingesting {count:,} documents in a new process, Milvus Lite in its own ...", flush=True)
        with milvus_lite_server(workdir / f"milvus-server-{count}") as (uri, pid):
            completed = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MEMORY_SCRIPT,
                    str(folder),
                    str(batch_size),
                    str(Path(__file__).parent),
                ],
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": str(REPO_ROOT),
                    "ODS_HOME": str(workdir / f"home-memory-{count}"),
                    "ODS_MILVUS__URI": uri,
                },
                capture_output=True,
                text=True,
                check=False,
            )
            if completed.returncode != 0:
                raise SystemExit(f"memory process failed:\n{completed.stderr[-4000:]}")
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            measured.append({"docs": count, **result, "server": resident_peak(pid)})
    return measured


# --- 5. re-ingest in a new process ---------------------------------------------------------------------

REINGEST_SCRIPT = """
import json, sys, time
from prefect import flow
from flows.ingest_documents import ingest_documents
from ods.adapters.embedder import cached_model_dirs

@flow
def warm_up_flow():
    pass

warm_up_flow()
seconds = []
for _ in range(2):  # the new process's first call, then a second one with everything loaded
    started = time.perf_counter()
    summary = ingest_documents(sys.argv[1], "bench", batch_size=int(sys.argv[2]))
    seconds.append(time.perf_counter() - started)
    models = len(cached_model_dirs())
print(json.dumps({"seconds": seconds, "summary": summary, "model_loaded": models > 0}))
"""


def release_milvus_lite() -> None:
    """Stop this process's Milvus Lite servers, as a flow run's process does when it ends.

    A Milvus Lite server holds its data folder's lock for as long as it lives, so a new process could
    not open the knowledge base's index otherwise; and a server left from an earlier run would go on
    sharing the cores with the next one.
    """
    from ods.adapters.milvus_lite_process import stop_lite_servers

    stop_lite_servers()


def reingest_in_new_process(folder: Path, batch_size: int) -> dict[str, Any]:
    """The flow over the unchanged corpus in a fresh interpreter, twice; only the flow calls are timed."""
    release_milvus_lite()
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", REINGEST_SCRIPT, str(folder), str(batch_size)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    process_seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"re-ingest process failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": process_seconds}


# --- report --------------------------------------------------------------------------------------------


def print_report(
    docs: int,
    batch_size: int,
    corpus_bytes: int,
    figures: dict[str, Any],
) -> None:
    summary, flow_seconds, again = figures["summary"], figures["flow_seconds"], figures["again"]
    chunks, stages = summary["chunks"], summary["seconds"]
    encode_seconds, chunk_seconds = figures["encode_seconds"], figures["chunk_seconds"]
    print(
        f"\ninput: {docs:,} documents, {corpus_bytes / 1e6:.1f} MB -> {chunks:,} chunks "
        f"({chunks / docs:.1f} per document), {batch_size} documents per batch\n"
    )
    print(f"{'step':36} {'seconds':>8} {'chunks/s':>10} {'of flow':>8}")
    print(f"{'baseline: re-chunk (not counted)':36} {chunk_seconds:8.2f} {chunks / chunk_seconds:10,.0f}")
    best, best_seconds = figures["best_batch"], figures["best_encode_seconds"]
    print(
        f"{'baseline: bare model.encode, batch 32':36} {encode_seconds:8.2f} {chunks / encode_seconds:10,.0f}"
    )
    sample = ", ".join(f"{size}: {seconds:.2f} s" for size, seconds in figures["sample_seconds"].items())
    print(f"{'  1,000-chunk sample by batch size':36} {sample}")
    print(
        f"{f'baseline: bare model.encode, batch {best}':36} {best_seconds:8.2f} {chunks / best_seconds:10,.0f}"
    )
    for stage, seconds in stages.items():
        share = 100 * seconds / flow_seconds
        print(f"{'flow: ' + stage:36} {seconds:8.2f} {chunks / max(seconds, 1e-9):10,.0f} {share:7.1f}%")
    other = flow_seconds - sum(stages.values())
    print(
        f"{'flow: rest (plan, Prefect, report)':36} {other:8.2f} {'':10} {100 * other / flow_seconds:7.1f}%"
    )
    print(f"{'flow end to end':36} {flow_seconds:8.2f} {chunks / flow_seconds:10,.0f}")
    first_again, second_again = again["seconds"]
    print(f"{'re-ingest, new process, 1st call':36} {first_again:8.2f}")
    print(f"{'re-ingest, same new process, 2nd':36} {second_again:8.2f}")
    print(f"{'re-ingest process, start to exit':36} {again['process_seconds']:8.2f}")
    print()
    print(
        f"flow throughput / bare encode          = {encode_seconds / flow_seconds:.3f}x at encode's default "
        f"batch 32, {best_seconds / flow_seconds:.3f}x at its fastest batch ({best})   "
        "(target >= 0.95; LlamaIndex ~0.92)"
    )
    print(
        f"re-ingest (new process) / first ingest = {100 * first_again / flow_seconds:.2f}%   (target <= 1%; "
        f"embedding model loaded by it: {again['model_loaded']}; 2nd call "
        f"{100 * second_again / flow_seconds:.2f}%)"
    )
    small, large = figures["memory"]
    print(
        f"peak memory above resting ({figures['resting'] / 1e6:.0f} MB), this process: "
        f"{small['docs']:,} docs {small['peak'] / 1e6:.0f} MB ({small['chunks']:,} chunks), "
        f"{docs:,} docs {large['peak'] / 1e6:.0f} MB = {large['peak'] / max(small['peak'], 1):.2f}x   "
        "(target: flat)"
    )
    small_server, large_server = figures["server_memory"]
    print(
        f"new process per run, Milvus Lite in its own process: {small_server['docs']:,} docs "
        f"{small_server['peak'] / 1e6:.0f} MB ({small_server['chunks']:,} chunks), {large_server['docs']:,} docs "
        f"{large_server['peak'] / 1e6:.0f} MB = {large_server['peak'] / max(small_server['peak'], 1):.2f}x   "
        f"(the pipeline's own memory, above {large_server['resting'] / 1e6:.0f} MB resting; the Milvus Lite "
        f"server's resident peak "
        f"{small_server['server'] / 1e6:.0f} MB and {large_server['server'] / 1e6:.0f} MB)"
    )
    print(
        f"  for reference: bare encode of all {chunks:,} chunks {figures['encode_peak'] / 1e6:.0f} MB; "
        f"child processes (parser worker, Milvus Lite) {small['children'] / 1e6:.0f} MB and "
        f"{large['children'] / 1e6:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=2_000, help="documents in the generated corpus")
    parser.add_argument("--batch-size", type=int, default=128, help="documents per ingest task")
    parser.add_argument(
        "--memory-docs",
        type=int,
        default=1_600,
        help="documents of the larger corpus ingested with Milvus Lite in its own process (memory only; "
        "the smaller is a quarter: both should span several batches so the pipeline is full)",
    )
    arguments = parser.parse_args()
    docs, small_docs = arguments.docs, max(arguments.docs // 4, 1)

    workdir = Path(tempfile.mkdtemp(prefix="ods-bench-ingest-"))
    isolate(workdir)
    print(f"generating {docs:,} + {small_docs:,} documents under {workdir} ...", flush=True)
    corpus, small_corpus = workdir / "corpus", workdir / "corpus-small"
    corpus_bytes = write_corpus(corpus, docs)
    write_corpus(small_corpus, small_docs, seed=7)
    embedder = warm_up()
    memory = PeakMemory()
    figures: dict[str, Any] = {"memory": []}

    # The baseline runs first, while no Milvus Lite server is busy building indexes in the background.
    print("baseline: re-chunking and bare-encoding the same chunks ...", flush=True)
    started = time.perf_counter()
    texts = chunk_texts(corpus, embedder)
    figures["chunk_seconds"] = time.perf_counter() - started
    with memory.watch():
        encode_resting = memory.peak
        figures["encode_seconds"] = bare_encode(texts, embedder)
    figures["encode_peak"] = memory.peak - encode_resting
    best, figures["sample_seconds"] = fastest_encode_batch(texts, embedder)
    figures["best_batch"] = best
    figures["best_encode_seconds"] = (
        figures["encode_seconds"] if best == DEFAULT_ENCODE_BATCH else bare_encode(texts, embedder, best)
    )

    # Both flow runs are measured above the same resting size, smaller corpus first.
    gc.collect()
    figures["resting"] = resting = memory.resting()
    for count, folder, home in ((small_docs, small_corpus, "home-small"), (docs, corpus, "home-main")):
        print(f"ingesting {count:,} documents (fresh ODS_HOME) ...", flush=True)
        use_home(workdir / home)
        summary, seconds = run_flow(folder, arguments.batch_size, memory)
        release_milvus_lite()
        assert summary["indexed"] == count and summary["quarantined"] == 0, summary
        figures["memory"].append(
            {
                "docs": count,
                "chunks": summary["chunks"],
                "peak": memory.peak - resting,
                "children": memory.children_peak,
            }
        )
    figures["summary"], figures["flow_seconds"] = summary, seconds
    assert len(texts) == summary["chunks"], (
        f"re-chunked {len(texts)} chunks, the flow indexed {summary['chunks']}"
    )

    figures["server_memory"] = pipeline_memory(workdir, arguments.memory_docs, arguments.batch_size)

    print("re-ingesting the unchanged corpus in a new process ...", flush=True)
    figures["again"] = again = reingest_in_new_process(corpus, arguments.batch_size)
    assert again["summary"]["indexed"] == 0 and again["summary"]["unchanged"] == docs, again

    print_report(docs, arguments.batch_size, corpus_bytes, figures)


if __name__ == "__main__":
    main()
