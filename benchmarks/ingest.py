"""Benchmark of ingest_documents against bare embedding of the same chunks, measured in the same run.

Generates a deterministic corpus (default 2,000 documents, about 20,000 chunks at the flow's 200-token chunk
size): Markdown with headings, plain text and HTML pages of English-like prose from a fixed vocabulary, sizes
varied so chunk counts vary. Then measures:

Each timed run happens in a new interpreter with the model loaded and warmed first (and, for the flow,
Prefect's temporary server started), as a Prefect process worker runs each flow run in a new process:

- baseline: bare ``model.encode(texts)`` of the same cached SentenceTransformer over the same chunk texts
  (re-chunked here with the flow's own functions), once with its default batch size (32) and once with
  the fastest of 16/32/64 texts per batch on this machine (tried on a 1,000-chunk sample): the physical
  limit;
- the ``ingest-documents`` flow end to end over N documents and over N/4 (fresh ODS_HOME each): chunks/s,
  the per-stage seconds of its summary (read / parse / embed / index), and the peak memory of its process
  above its resting size (Milvus Lite runs in a process of its own while ingesting; its and the parser
  worker's memory are shown apart);
- the re-ingest of the unchanged corpus in a new process (only the flow calls are timed there).

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
import subprocess
import sys
import tempfile
import time
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


# --- 3. runs in fresh processes ------------------------------------------------------------------------
#
# A Prefect process worker runs each flow run in a new process, and a process that has just embedded 20,000
# chunks is not a neutral place to time another embedding run (in the third session's runs the flow ran at
# 30 chunks/s after the baseline in the same process, 36 in a fresh one). So the baseline's encodes and the
# flow each run in a new interpreter, model loaded and warmed (and Prefect's temporary server started for
# the flow) before the clock starts; only the timed call is counted.

CHILD_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from ingest import child_main
child_main(sys.argv[2:])
"""


def run_child(mode: str, *arguments: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``child_main(mode, *arguments)`` in a new interpreter; its last stdout line is its JSON result."""
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, str(Path(__file__).parent), mode, *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"the {mode} process failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def child_main(argv: list[str]) -> None:
    """Entry point of the benchmark's child processes; prints one JSON line."""
    mode, *arguments = argv
    results = {"encode": child_encode, "flow": child_flow, "reingest": child_reingest}[mode](*arguments)
    print(json.dumps(results))


def load_embedder() -> Any:
    from ods.factories import build_embedder
    from ods.settings import get_settings

    embedder = build_embedder(get_settings().embedding)
    embedder.embed(["warm up the model once"] * 8)
    return embedder


def start_prefect() -> None:
    """Start the temporary Prefect server with a flow that does nothing, so its start-up is not counted."""
    from prefect import flow

    @flow
    def warm_up_flow() -> None:
        """Starts the temporary Prefect server."""

    warm_up_flow()


def child_encode(texts_file: str) -> dict[str, Any]:
    """Bare ``model.encode`` of the chunk texts at encode's default batch (32) and at the fastest batch of
    ``TRIED_ENCODE_BATCHES`` on an even 1,000-chunk sample of them, with the peak memory of the first."""
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    embedder = load_embedder()
    best, sample = fastest_encode_batch(texts, embedder)
    memory = PeakMemory()
    resting = memory.resting()
    with memory.watch():
        seconds = {DEFAULT_ENCODE_BATCH: bare_encode(texts, embedder)}
    if best != DEFAULT_ENCODE_BATCH:
        seconds[best] = bare_encode(texts, embedder, best)
    # The flow's own embedder over the same texts, alone (its length-sorted, token-capped passes), in the
    # flow's batches: what is left between it and the flow's embed stage is sharing the cores.
    started = time.perf_counter()
    for start in range(0, len(texts), CHUNKS_PER_FLOW_BATCH):
        embedder.embed(texts[start : start + CHUNKS_PER_FLOW_BATCH])
    embedder_seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak": memory.peak - resting,
        "best": best,
        "sample": sample,
        "embedder_seconds": embedder_seconds,
    }


def child_flow(folder: str, batch_size: str) -> dict[str, Any]:
    """The flow over ``folder`` in this new process: seconds, summary, peak memory above resting."""
    from flows.ingest_documents import ingest_documents

    start_prefect()
    load_embedder()  # cached per process: the flow's tasks reuse it
    memory = PeakMemory()
    gc.collect()
    resting = memory.resting()
    with memory.watch():
        started = time.perf_counter()
        summary = ingest_documents(folder, "bench", batch_size=int(batch_size))
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "summary": summary.model_dump(mode="json"),  # printed as JSON for the parent process
        "dense_search": dense_search_after("bench"),
        "peak": memory.peak - resting,
        "resting": resting,
        "children": memory.children_peak,
    }


def dense_search_after(kb: str) -> str:
    """Where dense search runs now that the flow has ended (an ingest should leave a current snapshot)."""
    from ods.factories import open_catalog
    from ods.settings import get_settings
    from ods.stages.ingest import dense_search_source

    settings = get_settings()
    with open_catalog(settings) as catalog:
        return dense_search_source(settings, catalog.get_knowledge_base(kb))


def child_reingest(folder: str, batch_size: str) -> dict[str, Any]:
    """The flow over the unchanged corpus in a new process, twice (first call, then all loaded)."""
    from flows.ingest_documents import ingest_documents
    from ods.adapters.models.embedder import cached_model_dirs

    start_prefect()
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        summary = ingest_documents(folder, "bench", batch_size=int(batch_size))
        seconds.append(time.perf_counter() - started)
    return {
        "seconds": seconds,
        "summary": summary.model_dump(mode="json"),  # printed as JSON for the parent process
        "model_loaded": len(cached_model_dirs()) > 0,
    }


# --- 4. baseline ---------------------------------------------------------------------------------------


def chunk_texts(folder: Path, embedder: Any) -> list[str]:
    """The chunks the flow indexes, made by the same parse and chunk functions (in this process)."""
    from ods.adapters.documents.parsers import parse_document
    from ods.domain.chunking import chunk_sections
    from ods.stages.ingest import MAX_CHUNK_TOKENS, OVERLAP_TOKENS, bounded_token_counts

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
CHUNKS_PER_FLOW_BATCH = 1_250  # ~128 documents of the generated corpus
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


# --- report --------------------------------------------------------------------------------------------


def print_report(docs: int, batch_size: int, corpus_bytes: int, figures: dict[str, Any]) -> None:
    flow, small, again, encode = figures["flow"], figures["small"], figures["again"], figures["encode"]
    summary, flow_seconds = flow["summary"], flow["seconds"]
    chunks, stages = summary["chunks"], summary["seconds"]
    encode_seconds = encode["seconds"][str(DEFAULT_ENCODE_BATCH)]
    best = encode["best"]
    best_seconds = encode["seconds"][str(best)]
    print(
        f"\ninput: {docs:,} documents, {corpus_bytes / 1e6:.1f} MB -> {chunks:,} chunks "
        f"({chunks / docs:.1f} per document), {batch_size} documents per batch; "
        "each timed run in a new process\n"
    )
    print(f"{'step':36} {'seconds':>8} {'chunks/s':>10} {'of flow':>8}")
    chunk_seconds = figures["chunk_seconds"]
    print(f"{'baseline: re-chunk (not counted)':36} {chunk_seconds:8.2f} {chunks / chunk_seconds:10,.0f}")
    print(
        f"{'baseline: bare model.encode, batch 32':36} {encode_seconds:8.2f} {chunks / encode_seconds:10,.0f}"
    )
    sample = ", ".join(f"{size}: {seconds:.2f} s" for size, seconds in encode["sample"].items())
    print(f"{'  1,000-chunk sample by batch size':36} {sample}")
    print(
        f"{f'baseline: bare model.encode, batch {best}':36} {best_seconds:8.2f} {chunks / best_seconds:10,.0f}"
    )
    embedder_seconds = encode["embedder_seconds"]
    print(
        f"{'ods embedder alone (flow batches)':36} {embedder_seconds:8.2f} {chunks / embedder_seconds:10,.0f}"
    )
    for stage, seconds in stages.items():
        share = 100 * seconds / flow_seconds
        print(f"{'flow: ' + stage:36} {seconds:8.2f} {chunks / max(seconds, 1e-9):10,.0f} {share:7.1f}%")
    other = flow_seconds - sum(stages.values())
    print(
        f"{'flow: rest (plan, Prefect, report)':36} {other:8.2f} {'':10} {100 * other / flow_seconds:7.1f}%"
    )
    print(f"{'flow end to end':36} {flow_seconds:8.2f} {chunks / flow_seconds:10,.0f}")
    small_chunks = small["summary"]["chunks"]
    small_label = f"flow, {small['docs']:,} documents"
    print(f"{small_label:36} {small['seconds']:8.2f} {small_chunks / small['seconds']:10,.0f}")
    first_again, second_again = again["seconds"]
    print(f"{'re-ingest, new process, 1st call':36} {first_again:8.2f}")
    print(f"{'re-ingest, same new process, 2nd':36} {second_again:8.2f}")
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
    print(
        f"peak memory of the flow's process above its resting {flow['resting'] / 1e6:.0f} MB: "
        f"{small['docs']:,} docs {small['peak'] / 1e6:.0f} MB ({small_chunks:,} chunks), "
        f"{docs:,} docs {flow['peak'] / 1e6:.0f} MB = {flow['peak'] / max(small['peak'], 1):.2f}x   "
        "(target: flat)"
    )
    print(
        f"  its child processes (parser worker, Milvus Lite server): {small['children'] / 1e6:.0f} MB and "
        f"{flow['children'] / 1e6:.0f} MB; bare encode of all {chunks:,} chunks: "
        f"{encode['peak'] / 1e6:.0f} MB above resting"
    )
    print(f"dense search after the flow: {flow['dense_search']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=2_000, help="documents in the generated corpus")
    parser.add_argument("--batch-size", type=int, default=128, help="documents per ingest task")
    arguments = parser.parse_args()
    docs, small_docs = arguments.docs, max(arguments.docs // 4, 1)
    batch = str(arguments.batch_size)

    workdir = Path(tempfile.mkdtemp(prefix="ods-bench-ingest-"))
    isolate(workdir)
    print(f"generating {docs:,} + {small_docs:,} documents under {workdir} ...", flush=True)
    corpus, small_corpus = workdir / "corpus", workdir / "corpus-small"
    corpus_bytes = write_corpus(corpus, docs)
    write_corpus(small_corpus, small_docs, seed=7)
    figures: dict[str, Any] = {}

    print("baseline: re-chunking the corpus, then bare-encoding its chunks in a new process ...", flush=True)
    started = time.perf_counter()
    texts = chunk_texts(corpus, load_embedder())
    figures["chunk_seconds"] = time.perf_counter() - started
    texts_file = workdir / "chunk-texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    figures["encode"] = run_child("encode", str(texts_file))

    for key, count, folder in (("small", small_docs, small_corpus), ("flow", docs, corpus)):
        print(f"ingesting {count:,} documents in a new process (fresh ODS_HOME) ...", flush=True)
        home = {"ODS_HOME": str(workdir / f"home-{key}")}
        result = run_child("flow", str(folder), batch, env=home)
        assert result["summary"]["indexed"] == count and result["summary"]["quarantined"] == 0, result
        figures[key] = {"docs": count, **result}
    assert len(texts) == figures["flow"]["summary"]["chunks"], (
        f"re-chunked {len(texts)} chunks, the flow indexed {figures['flow']['summary']['chunks']}"
    )

    print("re-ingesting the unchanged corpus in a new process ...", flush=True)
    figures["again"] = again = run_child(
        "reingest", str(corpus), batch, env={"ODS_HOME": str(workdir / "home-flow")}
    )
    assert again["summary"]["indexed"] == 0 and again["summary"]["unchanged"] == docs, again

    print_report(docs, arguments.batch_size, corpus_bytes, figures)


if __name__ == "__main__":
    main()
