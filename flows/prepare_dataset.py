"""`prepare_dataset`: raw table → clean → profile → validate (Great Expectations) → register.

A version that fails its expectations is recorded as rejected, its failing rows are quarantined, and the
run ends Failed naming the expectations and the quarantine URI. Re-running on the same source bytes and
spec returns the same version and writes nothing.
"""

from __future__ import annotations

from prefect import flow

from ods.stages.prepare import DatasetVersionSummary
from tasks.datasets import (
    clean_table,
    encode_table,
    fetch_raw_source,
    find_existing_version,
    load_dataset_spec,
    profile_table,
    read_raw_table,
    register_dataset_version,
    reject_dataset_version,
    reuse_existing_version,
    start_validator,
    validate_table,
    write_table,
)
from tasks.presets import FLOW_RESULTS


@flow(name="prepare-dataset", flow_run_name="prepare-{spec}", **FLOW_RESULTS)
def prepare_dataset(spec: str, source: str | None = None) -> DatasetVersionSummary:
    """Clean, validate and register one dataset version from a raw table.

    Args:
        spec: path or s3://bucket/key of the dataset spec (YAML).
        source: path or s3://bucket/key of the raw table; defaults to the spec's source.uri.
    """
    loaded = load_dataset_spec(spec)
    raw = fetch_raw_source(loaded, source)
    existing = find_existing_version(loaded, raw)
    if existing is not None:
        return reuse_existing_version(loaded, existing)
    start_validator(loaded)  # Great Expectations loads in its own process while the table is read and cleaned
    frame = read_raw_table(loaded, raw)
    cleaned = clean_table(loaded, frame)
    parquet = encode_table.submit(cleaned)  # compressing overlaps profiling; stored only if validation passes
    validation = validate_table.submit(loaded, cleaned)  # GE validates in its process while this one profiles
    profile = profile_table(cleaned)
    report = validation.result()
    if not report.success:
        reject_dataset_version(loaded, raw, cleaned, profile, report)
    written = write_table(loaded, parquet.result())
    return register_dataset_version(loaded, raw, cleaned, profile, report, written)


if __name__ == "__main__":
    import sys

    prepare_dataset(*sys.argv[1:3])
