"""Peak memory of ingest_documents with one huge document in the folder, against the same folder without it.

A knowledge-base folder of a few ordinary documents (the ingest benchmark's generator) is ingested twice,
each time in a new interpreter with a fresh ODS_HOME, the embedding model loaded and Prefect's temporary
server started before the clock starts (as ``benchmarks/ingest.py`` does):

- baseline: the ordinary documents alone;
- big: the same documents plus ``big.txt``, one line of English-like prose (default 50 MB; issue 19 item 2:
  such a file once took the flow's process to 2.8 GB and would have embedded ~62,000 chunks for ~30 min).

Printed: the peak resident memory of the flow's process above its resting size in both runs, their ratio,
the parser worker's peak, seconds, and what became of ``big.txt`` (quarantined over
``ODS_INGEST__MAX_DOCUMENT_CHARS`` by default). Target: the big run's peak within a few tens of MB of the
baseline's (the limits bound what one document can cost).

``--stop-after S`` ends a run that has not finished after S seconds and reports the peak reached so far
(a build without per-document limits would embed the big file for half an hour).

    .venv/bin/python benchmarks/ingest_large_document.py
    .venv/bin/python benchmarks/ingest_large_document.py --big-mb 20 --docs 4
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ingest import REPO_ROOT, isolate, load_embedder, sentence, start_prefect, write_corpus
from peak_memory import PeakMemory, _kernel_peak

CHILD_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from ingest_large_document import child_main
child_main(sys.argv[2:])
"""


def write_single_line(path: Path, megabytes: float, seed: int = 19) -> int:
    """One line of prose sentences, about ``megabytes`` MB, no newline anywhere; returns bytes written."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible document, not a secret
    target = int(megabytes * 1_000_000)
    block = " ".join(sentence(rng) for _ in range(2_000)).encode("utf-8") + b" "
    written = 0
    with path.open("wb") as out:
        while written < target:
            piece = block[: target - written]
            out.write(piece)
            written += len(piece)
    return written


def run_child(folder: Path, home: Path, stop_after: float) -> dict[str, Any]:
    import subprocess

    completed = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, str(Path(__file__).parent), str(folder), str(stop_after)],
        # PYTHONPATH set by the caller wins: point it at another checkout to measure that build.
        env={"PYTHONPATH": str(REPO_ROOT), **os.environ, "ODS_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"the flow process failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def child_main(argv: list[str]) -> None:
    """The flow over ``folder`` in this new process; prints one JSON line."""
    folder, stop_after = argv[0], float(argv[1])
    from flows.ingest_documents import ingest_documents

    start_prefect()
    load_embedder()
    memory = PeakMemory()
    gc.collect()
    resting = memory.resting()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["summary"] = ingest_documents(folder, "bench", batch_size=4).model_dump(mode="json")
        except BaseException as error:  # noqa: BLE001 - reported in the JSON line
            outcome["error"] = f"{type(error).__name__}: {error}"

    with memory.watch():
        started = time.perf_counter()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(stop_after)
        seconds = time.perf_counter() - started
        figures = {"seconds": seconds, "resting": resting, "children": memory.children_peak}
        if worker.is_alive():  # still running: report the peak so far, and leave without waiting
            peak = max(memory.peak, _kernel_peak() or 0)
            print(json.dumps({**figures, "stopped": True, "peak": peak - resting}), flush=True)
            stop_children()
            os._exit(0)  # the flow's thread cannot be stopped; its process goes
    figures["children"] = memory.children_peak
    print(json.dumps({**outcome, **figures, "stopped": False, "peak": memory.peak - resting}), flush=True)


def stop_children() -> None:
    """Kill what this process started (Prefect's server, the parser worker, the Milvus Lite server)."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=10)


def describe(result: dict[str, Any]) -> str:
    if result.get("stopped"):
        return f"stopped after {result['seconds']:.0f} s, still running"
    if "error" in result:
        return f"failed: {result['error']}"
    summary = result["summary"]
    return (
        f"{summary['indexed']} indexed ({summary['chunks']:,} chunks), {summary['quarantined']} quarantined, "
        f"{result['seconds']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--big-mb", type=float, default=50.0, help="size of the single-line text file, MB")
    parser.add_argument("--docs", type=int, default=8, help="ordinary documents beside it")
    parser.add_argument("--stop-after", type=float, default=600.0, help="seconds before a run is cut short")
    arguments = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ods-bench-large-document-"))
    isolate(workdir)
    baseline_folder, big_folder = workdir / "baseline", workdir / "big"
    write_corpus(baseline_folder, arguments.docs)
    write_corpus(big_folder, arguments.docs)
    big_bytes = write_single_line(big_folder / "big.txt", arguments.big_mb)
    print(f"{arguments.docs} documents, and beside them big.txt of {big_bytes:,} bytes, under {workdir}")

    figures = {}
    for key, folder in (("baseline", baseline_folder), ("big", big_folder)):
        print(f"ingesting {folder.name} in a new process ...", flush=True)
        figures[key] = run_child(folder, workdir / f"home-{key}", arguments.stop_after)

    baseline, big = figures["baseline"], figures["big"]
    print()
    print(f"{'run':10} {'peak above resting':>19} {'parser worker etc.':>19}   outcome")
    for key, result in figures.items():
        print(
            f"{key:10} {result['peak'] / 1e6:16.0f} MB {result['children'] / 1e6:16.0f} MB   {describe(result)}"
        )
    print(
        f"\npeak with big.txt / baseline = {big['peak'] / max(baseline['peak'], 1):.2f}x "
        f"({(big['peak'] - baseline['peak']) / 1e6:+.0f} MB; resting {big['resting'] / 1e6:.0f} MB)"
    )
    for item in big.get("summary", {}).get("quarantined_documents", []):
        print(f"quarantined {item['uri'].rsplit('/', 1)[-1]}: {item['detail']}")


if __name__ == "__main__":
    main()
