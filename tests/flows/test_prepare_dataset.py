"""prepare_dataset end to end on the Prefect test server: local store + SQLite, and real S3 + PostgreSQL."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.prepare_dataset import prepare_dataset
from ods.adapters.catalog import Catalog
from ods.adapters.object_store import ObjectStore
from ods.domain.dataset_spec import DatasetSpecError
from ods.errors import OdsError
from ods.factories import build_object_store
from ods.settings import Settings, get_settings
from ods.stages.prepare import DatasetRejectedError, SourceNotFoundError
from ods.stages.sample_data import SALES_SPEC, write_sales_example
from tests.support.postgres import temporary_database
from tests.support.s3_server import S3Server


@dataclass
class Platform:
    settings: Settings
    store: ObjectStore
    catalog: Catalog

    def objects(self) -> list[str]:
        return [info.key for info in self.store.list("datasets/")]

    def versions(self, name: str) -> list[Any]:
        try:
            return self.catalog.list_dataset_versions(name)
        except OdsError:
            return []


@pytest.fixture(params=["local-sqlite", "s3-postgres"])
def platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The embedded defaults, or the cluster's real parts: an S3 server and PostgreSQL."""
    with temporary_database() if request.param == "s3-postgres" else _no_database() as database_url:
        if request.param == "s3-postgres":
            server: S3Server = request.getfixturevalue("s3_server")
            monkeypatch.setenv("ODS_CATALOG__URL", database_url)
            monkeypatch.setenv("ODS_OBJECT_STORE__KIND", "minio")
            monkeypatch.setenv("ODS_OBJECT_STORE__ENDPOINT", server.endpoint)
            monkeypatch.setenv("ODS_OBJECT_STORE__ACCESS_KEY", server.access_key)
            monkeypatch.setenv("ODS_OBJECT_STORE__SECRET_KEY", server.secret_key)
            monkeypatch.setenv("ODS_OBJECT_STORE__BUCKET", f"ods-{abs(hash(request.node.name)) % 10**12}")
        get_settings.cache_clear()
        settings = get_settings()
        store = build_object_store(settings)
        store.ensure_ready()
        catalog = Catalog.open(settings.catalog_url)
        yield Platform(settings, store, catalog)
        catalog.close()


class _no_database:
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *args: object) -> None:
        return None


def _events(name: str, resource_id: str, expected: int = 1) -> list[Any]:
    """Events the server received (they are shipped asynchronously: wait a bounded time)."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id])
    )
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(event_filter, limit=50).events
            if len(events) >= expected or time.monotonic() > deadline:
                return events
            time.sleep(0.2)


def test_sales_example_is_registered_with_lineage_and_event(platform: Platform, tmp_path: Path) -> None:
    csv_path, spec_path = write_sales_example(tmp_path, rows=1_000)

    result = prepare_dataset(str(spec_path))

    assert result.status == "registered"
    assert result.version == 1
    assert result.rows == 980  # 20 exact duplicate rows removed
    version = platform.catalog.get_dataset_version("sales")
    assert version.uri == result.uri
    assert version.source_uri == csv_path.resolve().as_uri()
    assert version.profile["columns"]["customer_email"]["pii_kind"] == "email"
    assert [column["name"] for column in version.schema["columns"]][:2] == ["order_id", "order_date"]
    stored = pd.read_parquet(io.BytesIO(platform.store.get_bytes(_key(platform, result.uri))))
    assert len(stored) == 980
    assert stored["customer_email"].str.startswith("c***@").all()
    events = _events("ods.dataset.registered", "ods.dataset.sales")
    assert events[0].payload["version"] == 1
    assert events[0].payload["train"] == {"trainer": "tabular", "target": "returned"}
    assert set(events[0].payload) == {*result.model_dump(mode="json"), "train"}  # the result's fields


def _key(platform: Platform, uri: str) -> str:
    return uri.removeprefix(platform.store.location)


def test_second_run_returns_the_same_version_and_writes_nothing(platform: Platform, tmp_path: Path) -> None:
    _, spec_path = write_sales_example(tmp_path, rows=500)
    first = prepare_dataset(str(spec_path))
    objects = [(info.key, info.etag) for info in platform.store.list("")]

    second = prepare_dataset(str(spec_path))

    assert second == first
    assert [(info.key, info.etag) for info in platform.store.list("")] == objects
    assert len(platform.versions("sales")) == 1


def test_planted_bad_rows_are_rejected_and_exactly_quarantined(platform: Platform, tmp_path: Path) -> None:
    csv_path, spec_path = write_sales_example(tmp_path, rows=300)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.loc[[10, 20], "status"] = "lost"
    frame.loc[30, "region"] = "12 Unknown"
    frame.to_csv(csv_path, index=False)

    with pytest.raises(DatasetRejectedError) as raised:
        prepare_dataset(str(spec_path))

    message = str(raised.value)
    assert "in_set(status)" in message and "regex(region)" in message
    [version] = platform.versions("sales")
    assert version.status == "rejected"
    assert message.endswith(f"; 3 failing row(s) quarantined at {version.uri}")
    quarantined = pd.read_parquet(io.BytesIO(platform.store.get_bytes(_key(platform, version.uri))))
    assert sorted(quarantined["order_id"]) == sorted(frame.loc[[10, 20, 30], "order_id"])
    with pytest.raises(OdsError, match="no registered version"):
        platform.catalog.get_dataset_version("sales")
    assert not [key for key in platform.objects() if key.endswith(".parquet") and "quarantine" not in key]
    assert _events("ods.dataset.rejected", "ods.dataset.sales")


def test_rejected_data_passes_later_under_a_relaxed_spec(platform: Platform, tmp_path: Path) -> None:
    csv_path, spec_path = write_sales_example(tmp_path, rows=200)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.loc[5, "status"] = "lost"
    frame.to_csv(csv_path, index=False)
    with pytest.raises(DatasetRejectedError):
        prepare_dataset(str(spec_path))
    spec_path.write_text(SALES_SPEC.replace("pending]}", "pending, lost]}"), encoding="utf-8")

    result = prepare_dataset(str(spec_path))

    assert (result.status, result.version) == ("registered", 2)


PAYMENTS_SPEC = """\
name: payments
source: {uri: payments.csv}
expectations:
  - between: {column: amount, min: 0, max: 1000}
  - not_null: {column: id}
"""


def test_a_range_check_on_a_text_column_is_reported_as_a_type_mismatch_not_an_empty_quarantine(
    platform: Platform, tmp_path: Path
) -> None:
    (tmp_path / "payments.csv").write_text("id,amount\n1,12 EUR\n2,40 EUR\n3,7 EUR\n", encoding="utf-8")
    (tmp_path / "payments.yaml").write_text(PAYMENTS_SPEC, encoding="utf-8")

    messages = []
    for _ in range(2):  # the second run finds the rejected version and says the same
        with pytest.raises(DatasetRejectedError) as raised:
            prepare_dataset(str(tmp_path / "payments.yaml"))
        messages.append(str(raised.value))

    assert (
        messages[0]
        == messages[1]
        == (
            "dataset 'payments' v1 rejected: failed expectations: between(amount): needs a numeric column, but "
            "'amount' is text (string) after cleaning; add a `coerce` step for 'amount' (type int, float or "
            "decimal) before validating; no row was quarantined (no expectation that failed is about single rows)"
        )
    )
    [version] = platform.versions("payments")
    assert version.status == "rejected"
    [run] = platform.catalog.validation_runs(version.id)
    assert run.quarantine_uri is None
    outcome = run.results["expectations"][0]
    assert (outcome["expectation"], outcome["success"], outcome["observed"]) == ("between", False, "string")


def test_a_type_mismatch_and_failing_rows_together_quarantine_exactly_the_rows(
    platform: Platform, tmp_path: Path
) -> None:
    (tmp_path / "payments.csv").write_text("id,amount\n1,12 EUR\n,40 EUR\n", encoding="utf-8")
    (tmp_path / "payments.yaml").write_text(PAYMENTS_SPEC, encoding="utf-8")

    with pytest.raises(DatasetRejectedError) as raised:
        prepare_dataset(str(tmp_path / "payments.yaml"))

    [version] = platform.versions("payments")
    message = str(raised.value)
    assert "between(amount): needs a numeric column" in message and "not_null(id): 1 unexpected" in message
    assert message.endswith(f"; 1 failing row(s) quarantined at {version.uri}")
    quarantined = pd.read_parquet(io.BytesIO(platform.store.get_bytes(_key(platform, version.uri))))
    assert quarantined["amount"].tolist() == ["40 EUR"]


@pytest.mark.parametrize(
    ("content", "spec_edit", "error", "expected"),
    [
        (None, None, SourceNotFoundError, "no such file"),
        (b"", None, OdsError, "empty"),
        (b"order_id,region\n", None, OdsError, "no data rows"),
        (b"order_id,region\n" + "1,Z\u00fcrich\n".encode() * 200 + b"2,\xff\n", None, OdsError, "byte"),
        (b"order_id,region\n1,north\n2,south,extra\n", None, OdsError, "line 3"),
        (b"order_id,region\n1,north\n", None, DatasetSpecError, "column 'product' not found"),
        (b"order_id,region\n1,north\n", "steps: [unclosed", DatasetSpecError, "line"),
    ],
    ids=[
        "missing-file",
        "empty-file",
        "header-only",
        "undecodable",
        "ragged",
        "missing-column",
        "invalid-yaml",
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing(
    platform: Platform,
    tmp_path: Path,
    content: bytes | None,
    spec_edit: str | None,
    error: type[Exception],
    expected: str,
) -> None:
    spec_path = tmp_path / "sales.yaml"
    spec_path.write_text(SALES_SPEC + (f"\n{spec_edit}\n" if spec_edit else ""), encoding="utf-8")
    if content is not None:
        (tmp_path / "sales.csv").write_bytes(content)

    with pytest.raises(error) as raised:
        prepare_dataset(str(spec_path))

    assert expected in str(raised.value)
    assert "\n" not in str(raised.value).strip()
    assert platform.versions("sales") == []
    assert platform.objects() == []


@pytest.mark.corpora
def test_bl_books_corpus_is_cleaned_validated_and_registered(
    platform: Platform, corpora_dir: Path, tmp_path: Path
) -> None:
    spec = Path(__file__).resolve().parents[2] / "examples" / "specs" / "bl_books.yaml"
    source = corpora_dir / "tabular" / "BL-Flickr-Images-Book.csv"

    result = prepare_dataset(str(spec), str(source))

    assert result.status == "registered"
    assert result.rows == 8_265
    version = platform.catalog.get_dataset_version("bl_books")
    columns = version.profile["columns"]
    assert len(columns) == 10
    assert columns["year"]["min"] == 1510 and columns["year"]["max"] == 1915
    assert columns["place"]["top_values"][0] == {"value": "London", "count": 4_123}
    assert version.source_uri == source.resolve().as_uri()


def test_parquet_written_before_a_crash_is_adopted_by_the_next_run(
    platform: Platform, tmp_path: Path
) -> None:
    """A run killed between "Parquet written" and "catalog row committed" leaves no orphan behind."""
    from ods.adapters.tabular.source import read_table
    from ods.domain.cleaning import apply_cleaning
    from ods.stages.prepare import dataset_prefix, fetch_source, load_spec, write_parquet

    _, spec_path = write_sales_example(tmp_path, rows=300)
    loaded = load_spec(str(spec_path), platform.settings)
    source = fetch_source(loaded, platform.settings)
    cleaned = apply_cleaning(
        read_table(source.data, name=source.name, source=loaded.spec.source), loaded.spec
    )
    orphan = write_parquet(platform.store, dataset_prefix("sales"), cleaned.frame)
    before = platform.store.stat(orphan.key)

    result = prepare_dataset(str(spec_path))

    assert result.uri == orphan.uri
    assert platform.store.stat(orphan.key).etag == before.etag
    assert [key for key in platform.objects() if key.endswith(".parquet")] == [orphan.key]
    assert [version.uri for version in platform.versions("sales")] == [orphan.uri]
