"""Benchmark of prepare_dataset against a baseline measured in the same run.

Generates a dirty sales CSV (default 1,000,000 rows, 11 columns: dates in two formats, e-mails, phones,
'n/a' numbers, blanks, 2% duplicate rows), then measures:

- baseline: pandas ``read_csv`` + ``to_parquet`` (zstd) of the same file;
- every stage of the flow, run through the same functions the tasks call (rows/s each);
- the ``prepare-dataset`` flow end to end (Prefect server already warm), and its idempotent re-run;
- peak memory of the stages above the process's resting size, against the cleaned frame's size.

Targets (2-core machine): flow total <= 3x baseline; Great Expectations <= 20% of the total; peak memory
<= 4x the in-memory size of the cleaned frame.

    .venv/bin/python benchmarks/prepare_dataset.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from peak_memory import PeakMemory


def timed(label: str, timings: dict[str, float], function: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = function()
    timings[label] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated CSV")
    arguments = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ods-bench-prepare-"))
    os.environ["ODS_HOME"] = str(workdir / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))

    from ods.adapters.object_store import build_object_store
    from ods.adapters.tabular_source import read_table
    from ods.domain.cleaning import apply_cleaning
    from ods.domain.profiling import profile_frame
    from ods.preparation import dataset_prefix, fetch_source, load_spec, write_parquet
    from ods.quality.validation import validate_frame
    from ods.sample_data import write_sales_example
    from ods.settings import get_settings

    print(f"generating {arguments.rows:,} dirty rows ...", flush=True)
    csv_path, spec_path = write_sales_example(workdir / "data", rows=arguments.rows)
    size_mb = csv_path.stat().st_size / 1e6

    baseline: dict[str, float] = {}
    frame = timed("read_csv", baseline, lambda: pd.read_csv(csv_path))
    timed("to_parquet", baseline, lambda: frame.to_parquet(workdir / "baseline.parquet", compression="zstd"))
    baseline_total = sum(baseline.values())

    settings = get_settings()
    store = build_object_store(settings)
    store.ensure_ready()
    stages: dict[str, float] = {}
    memory = PeakMemory()
    with memory.watch():
        resting = memory.peak
        loaded = timed("load spec", stages, lambda: load_spec(str(spec_path), settings))
        source = timed("fetch + sha256", stages, lambda: fetch_source(loaded, settings))
        raw = timed(
            "read", stages, lambda: read_table(source.data, name=source.name, source=loaded.spec.source)
        )
        cleaned = timed("clean", stages, lambda: apply_cleaning(raw, loaded.spec))
        profile = timed("profile", stages, lambda: profile_frame(cleaned.frame, cleaned.pii_kinds))
        report = timed(
            "validate (GE)", stages, lambda: validate_frame(cleaned.frame, loaded.spec.expectations)
        )
        timed("write parquet", stages, lambda: write_parquet(store, dataset_prefix("bench"), cleaned.frame))
    frame_bytes = int(cleaned.frame.memory_usage(deep=True).sum())
    peak_extra = memory.peak - resting
    assert report.success and profile["row_count"] == len(cleaned.frame)

    from prefect import flow

    from flows.prepare_dataset import prepare_dataset

    @flow
    def warm_up() -> None:
        """Starts the temporary Prefect server so its start-up is not counted."""

    warm_up()
    runs: dict[str, float] = {}
    result = timed("flow", runs, lambda: prepare_dataset(str(spec_path)))
    timed("flow re-run (idempotent)", runs, lambda: prepare_dataset(str(spec_path)))
    flow_total = runs["flow"]

    rows = arguments.rows
    print(f"\ninput: {rows:,} rows, {size_mb:.1f} MB CSV -> {result['rows']:,} rows registered\n")
    print(f"{'stage':28} {'seconds':>8} {'rows/s':>12}")
    for label, seconds in {**{f"baseline {k}": v for k, v in baseline.items()}, **stages}.items():
        print(f"{label:28} {seconds:8.2f} {rows / seconds:12,.0f}")
    print(f"{'baseline total':28} {baseline_total:8.2f} {rows / baseline_total:12,.0f}")
    print(f"{'stages total':28} {sum(stages.values()):8.2f} {rows / sum(stages.values()):12,.0f}")
    for label, seconds in runs.items():
        print(f"{label:28} {seconds:8.2f} {rows / seconds:12,.0f}")
    ge_share = stages["validate (GE)"] / sum(stages.values())
    print()
    print(f"flow total / baseline            = {flow_total / baseline_total:.2f}x   (target <= 3x)")
    print(f"Great Expectations share         = {100 * ge_share:.1f}%   (target <= 20%)")
    print(
        f"peak memory above resting / frame = {peak_extra / 1e6:.0f} MB / {frame_bytes / 1e6:.0f} MB = "
        f"{peak_extra / frame_bytes:.2f}x   (target <= 4x)"
    )
    print(f"idempotent re-run / first run    = {runs['flow re-run (idempotent)'] / flow_total:.3f}")


if __name__ == "__main__":
    main()
