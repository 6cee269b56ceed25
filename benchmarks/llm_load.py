"""Benchmark: loading the packaged SmolLM2 in a new process, from its GGUF and from the converted cache.

Every `ods` process that writes SQL or an answer with the local model loads it first (`ods ask`, `ods chat`,
a flow run, `ods serve`). transformers reads the packaged GGUF in ~15 s on two cores; since the cache of
ods.adapters.models.gguf_cache the first load keeps it converted and later processes read that folder.

Each run is a new Python process that builds the configured LLM (`build_llm`), loads it and writes one
8-token completion. The baseline reads the GGUF (ODS_LLM__GGUF_CACHE names a path under a file, so nothing
can be kept); the other run loads the folder a first, untimed run converted. The two alternate, so both see
the same machine load. It prints the model's load time (`load_seconds`), the process's wall time, and the
ratios cache / GGUF.

    .venv/bin/python benchmarks/llm_load.py            # 3 runs of each
    .venv/bin/python benchmarks/llm_load.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """
import json
from ods.domain.chat import ChatMessage
from ods.factories import build_llm
from ods.settings import load_settings
llm = build_llm(load_settings().llm)
llm.complete([ChatMessage("user", "How many orders per region?")], max_tokens=8)
print(json.dumps({"load_seconds": llm.loaded.load_seconds, "from": llm.loaded.model.name_or_path}))
"""


def timed_load(cache: Path) -> tuple[float, float, str]:
    """(load seconds, process wall seconds, where the model came from) of one new process."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "ODS_LLM__GGUF_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"loading the LLM failed:\n{completed.stderr[-2000:]}")
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return float(report["load_seconds"]), elapsed, str(report["from"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ods-bench-llm-") as name:
        folder = Path(name)
        blocker = folder / "not-a-folder"
        blocker.write_text("the baseline's cache cannot be created under a file", encoding="utf-8")
        kinds = {"GGUF (baseline)": blocker / "cache", "converted cache": folder / "cache"}
        _, first, _ = timed_load(kinds["converted cache"])  # converts once
        print(f"first load, converting into the cache: {first:.2f} s wall (untimed below)")
        times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        for _ in range(args.runs):
            for kind, cache in kinds.items():
                load, wall, source = timed_load(cache)
                expected_cache = kind == "converted cache"
                if expected_cache != source.startswith(str(folder / "cache")):
                    raise SystemExit(f"{kind}: the model came from {source}")
                times[kind].append((load, wall))
    print(f"packaged SmolLM2 in a new process, {args.runs} runs of each, alternating:")
    for kind, values in times.items():
        loads = [load for load, _ in values]
        walls = [wall for _, wall in values]
        print(
            f"  {kind:16} load median {statistics.median(loads):6.2f} s (min {min(loads):5.2f}, max "
            f"{max(loads):5.2f}); process {statistics.median(walls):6.2f} s"
        )
    gguf, cached = times["GGUF (baseline)"], times["converted cache"]
    load_ratio = statistics.median(load for load, _ in cached) / statistics.median(load for load, _ in gguf)
    wall_ratio = statistics.median(wall for _, wall in cached) / statistics.median(wall for _, wall in gguf)
    print(f"cache / GGUF (baseline): load {load_ratio:.3f}x, process {wall_ratio:.2f}x")


if __name__ == "__main__":
    main()
