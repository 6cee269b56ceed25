"""Warehouses for Text-to-SQL against real parts: datasets prepared for real on the local store and on S3,
queried through DuckDB; and an allowlisted schema on the real PostgreSQL server.

Datasets are prepared once per store (module scope) by the preparation stages a flow runs, without Prefect:
``sales`` twice (v1, v2), ``regions`` once, and ``returns`` whose expectations fail (rejected only).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from ods.adapters.catalog import Catalog
from ods.adapters.object_store import ObjectStore, key_of
from ods.adapters.tabular.source import read_table
from ods.adapters.warehouse import (
    DuckDBWarehouse,
    QueryLimitError,
    QueryTimeoutError,
    SqlDatabaseWarehouse,
    Warehouse,
    WarehouseQueryError,
)
from ods.adapters.warehouse.query_process import QueryLimits, connect_hardened
from ods.domain.cleaning import apply_cleaning
from ods.domain.profiling import profile_frame
from ods.domain.sql_guard import GuardedQuery, SqlRejected
from ods.errors import NotFoundError, OdsError, SettingsError
from ods.factories import build_object_store, open_sql_database_warehouse, open_warehouse
from ods.quality.validation import validate_frame
from ods.settings import Settings, load_settings
from ods.stages.prepare import (
    PreparedVersion,
    dataset_prefix,
    fetch_source,
    load_spec,
    register_version,
    reject_version,
    write_parquet,
)
from ods.stages.sample_data import write_sales_example
from tests.support.postgres import temporary_database
from tests.support.s3_server import S3Server
from tests.unit.test_sql_guard import ANALYST_QUERIES

REGIONS_SPEC = """\
name: regions
description: Sales regions and the warehouse serving each
source:
  uri: regions.csv
steps:
  - normalize: {columns: all, trim: true}
expectations:
  - unique: {column: region}
"""
REGIONS_CSV = (
    "region,hub\nNorth,Leeds\nNorth East,Leeds\nSouth,Reading\nCentral,Reading\nWest,Bristol\nEast,Norwich\n"
)
RETURNS_SPEC = """\
name: returns
source:
  uri: returns.csv
expectations:
  - not_null: {column: order_id}
"""
RETURNS_CSV = "order_id,reason\n1,damaged\n,lost\n"
TIMEOUT_S = 0.5
# 1,000^4 rows to count: minutes of work, whatever the machine.
ENDLESS_SQL = "SELECT COUNT(*) FROM sales AS a, sales AS b, sales AS c, sales AS d"


def prepare(settings: Settings, catalog: Catalog, spec_path: Path) -> PreparedVersion:
    """The prepare_dataset flow's stages, in order, without Prefect."""
    loaded = load_spec(str(spec_path), settings)
    source = fetch_source(loaded, settings)
    frame = read_table(source.data, name=source.name, source=loaded.spec.source)
    cleaned = apply_cleaning(frame, loaded.spec, pii_salt="")
    profile = profile_frame(cleaned.frame, cleaned.pii_kinds)
    report = validate_frame(cleaned.frame, loaded.spec.expectations)
    rows = [outcome.as_row() for outcome in report.outcomes]
    store = build_object_store(settings)
    if not report.success:
        return reject_version(
            catalog, store, loaded, source, frame=cleaned.frame, failing_rows=report.failing_rows,
            profile=profile, validation_rows=rows, reason="failed expectations: " + report.summary(),
            flow_run_id=None, tenant="default",
        )  # fmt: skip
    written = write_parquet(store, dataset_prefix(loaded.spec.name), cleaned.frame)
    return register_version(
        catalog, loaded, source, written, frame=cleaned.frame, profile=profile, validation_rows=rows,
        flow_run_id=None,
    )  # fmt: skip


@dataclass
class Platform:
    settings: Settings
    catalog: Catalog
    store: ObjectStore
    versions: dict[str, PreparedVersion]

    def frame(self, name: str) -> pd.DataFrame:
        record = self.versions[name].record
        with self.store.filesystem().open_input_file(key_of(self.store, record.uri)) as stream:
            return pq.read_table(stream).to_pandas()


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Datasets prepared for real on the local store or on the S3 server; a SQLite catalog beside them."""
    home = tmp_path_factory.mktemp(f"warehouse-{request.param}")
    overrides: dict[str, object] = {"home": home}
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        overrides["object_store"] = {
            "kind": "minio", "endpoint": server.endpoint, "access_key": server.access_key,
            "secret_key": server.secret_key, "bucket": f"ods-wh-{secrets.token_hex(6)}",
        }  # fmt: skip
    settings = load_settings(**overrides)
    store = build_object_store(settings)
    store.ensure_ready()
    sources = home / "sources"
    _, sales_spec = write_sales_example(sources / "v1", rows=1000, seed=7)
    _, sales_spec_2 = write_sales_example(sources / "v2", rows=600, seed=8)
    (sources / "regions.csv").write_text(REGIONS_CSV, encoding="utf-8")
    (sources / "regions.yaml").write_text(REGIONS_SPEC, encoding="utf-8")
    (sources / "returns.csv").write_text(RETURNS_CSV, encoding="utf-8")
    (sources / "returns.yaml").write_text(RETURNS_SPEC, encoding="utf-8")
    with Catalog.open(settings.catalog_url) as catalog:
        versions = {
            "sales@1": prepare(settings, catalog, sales_spec),
            "sales@2": prepare(settings, catalog, sales_spec_2),
            "regions@1": prepare(settings, catalog, sources / "regions.yaml"),
            "returns@1": prepare(settings, catalog, sources / "returns.yaml"),
        }
        assert [prepared.record.status for prepared in versions.values()] == [
            "registered", "registered", "registered", "rejected",
        ]  # fmt: skip
        yield Platform(settings, catalog, store, versions)


@pytest.fixture(scope="module")
def warehouse(platform: Platform) -> Iterator[DuckDBWarehouse]:
    """The newest registered version of every dataset (sales@2, regions@1)."""
    with open_warehouse(platform.settings, platform.catalog) as opened:
        yield opened


def run(
    warehouse: Warehouse, sql: str, *, max_rows: int | None = None, timeout_s: float = 30.0
) -> list[tuple]:
    return warehouse.run(warehouse.guard(sql, max_rows=max_rows), timeout_s=timeout_s).rows


def test_latest_registered_versions_skips_rejected_only_datasets(platform: Platform) -> None:
    latest = platform.catalog.latest_registered_versions()
    assert [(record.dataset_name, record.version, record.status) for record in latest] == [
        ("regions", 1, "registered"), ("sales", 2, "registered"),
    ]  # fmt: skip
    assert latest[1].id == platform.versions["sales@2"].record.id


def test_relations_hold_the_registered_versions(platform: Platform, warehouse: DuckDBWarehouse) -> None:
    assert isinstance(warehouse, Warehouse) and warehouse.dialect == "duckdb"
    tables = {table.name: table for table in warehouse.tables()}
    assert sorted(tables) == ["regions", "sales"]
    assert tables["sales"].dataset == "sales@2"
    for name, ref in (("sales", "sales@2"), ("regions", "regions@1")):
        record = platform.versions[ref].record
        assert tables[name].row_count == record.row_count
        assert run(warehouse, f"SELECT COUNT(*) FROM {name}") == [(record.row_count,)]  # noqa: S608
    assert platform.versions["sales@1"].record.row_count != platform.versions["sales@2"].record.row_count


def test_descriptions_show_masked_samples(warehouse: DuckDBWarehouse) -> None:
    sales = next(table for table in warehouse.tables() if table.name == "sales")
    columns = {column.name: column for column in sales.columns}
    assert columns["customer_email"].pii_kind == "email"
    assert columns["order_date"].type == "DATE"
    assert len(sales.sample_rows) == 3
    assert all("***@" in row["customer_email"] for row in sales.sample_rows)


def test_pinned_versions(platform: Platform) -> None:
    with open_warehouse(platform.settings, platform.catalog, ["sales@1"]) as pinned:
        assert [table.dataset for table in pinned.tables()] == ["sales@1"]
        assert run(pinned, "SELECT COUNT(*) FROM sales") == [(platform.versions["sales@1"].record.row_count,)]
        with pytest.raises(SqlRejected, match=r"'regions' is not one of the datasets"):
            pinned.guard("SELECT * FROM regions")


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        (["nope"], r"'nope' cannot be queried: no dataset named 'nope'.*registered datasets: regions@1, sales@2"),
        (["returns"], r"'returns' cannot be queried: dataset 'returns' has no registered version; versions: 1 \(rejected\)"),
        (["returns@1"], r"'returns@1' cannot be queried: version 1 of 'returns' was rejected \(failed expectations"),
        (["sales@9"], r"'sales@9' cannot be queried: dataset 'sales' has no version 9"),
        (["sales@1", "sales@2"], r"dataset 'sales' is named more than once"),
        (["sales@x"], r"the version after '@' must be a positive number"),
    ],
)  # fmt: skip
def test_unknown_or_rejected_datasets_are_refused(platform: Platform, refs: list[str], message: str) -> None:
    with pytest.raises(OdsError, match=message):
        open_warehouse(platform.settings, platform.catalog, refs)


def test_aggregate_join_and_cte(platform: Platform, warehouse: DuckDBWarehouse) -> None:
    sql = """
        WITH per_region AS (
            SELECT region, COUNT(*) AS orders, SUM(quantity) AS units FROM sales GROUP BY region
        )
        SELECT r.hub, SUM(p.orders) AS orders, SUM(p.units) AS units
        FROM per_region AS p JOIN regions AS r ON r.region = p.region
        GROUP BY r.hub ORDER BY r.hub
    """
    result = warehouse.run(warehouse.guard(sql), timeout_s=30)
    assert result.columns == ("hub", "orders", "units")
    sales = platform.frame("sales@2").merge(platform.frame("regions@1"), on="region")
    expected = sales.groupby("hub").agg(orders=("region", "size"), units=("quantity", "sum")).sort_index()
    assert result.rows == [(hub, int(row.orders), int(row.units)) for hub, row in expected.iterrows()]
    assert result.truncated is False and result.row_count == len(expected)


def test_row_cap_truncates(warehouse: DuckDBWarehouse) -> None:
    capped = warehouse.run(
        warehouse.guard("SELECT * FROM sales ORDER BY order_id", max_rows=10), timeout_s=30
    )
    assert capped.row_count == len(capped.rows) == 10 and capped.truncated is True
    assert capped.sql.endswith("LIMIT 10")
    whole = warehouse.run(warehouse.guard("SELECT * FROM regions", max_rows=10), timeout_s=30)
    assert whole.row_count == 6 and whole.truncated is False
    # A LIMIT the query sets itself is what was asked for, not a cut.
    own = warehouse.run(warehouse.guard("SELECT * FROM sales LIMIT 3", max_rows=10), timeout_s=30)
    assert own.row_count == 3 and own.truncated is False


def test_a_slow_query_is_interrupted(warehouse: DuckDBWarehouse) -> None:
    guarded = warehouse.guard(ENDLESS_SQL)
    with pytest.raises(QueryTimeoutError, match=r"longer than its limit of 0\.5 s"):
        warehouse.run(guarded, timeout_s=TIMEOUT_S)
    assert run(warehouse, "SELECT COUNT(*) FROM regions") == [(6,)]  # the connection is usable again


def test_run_accepts_only_guarded_queries(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(TypeError, match="only a GuardedQuery"):
        warehouse.run("SELECT 1", timeout_s=1)  # type: ignore[arg-type]
    forged = GuardedQuery(sql="SELECT * FROM read_csv('/etc/passwd')", tables=frozenset({"sales"}), limit=5)
    with pytest.raises(SqlRejected, match="read_csv"):
        warehouse.run(forged, timeout_s=1)
    elsewhere = GuardedQuery(sql="SELECT * FROM secrets LIMIT 5", tables=frozenset({"secrets"}), limit=5)
    with pytest.raises(SqlRejected, match=r"'secrets' is not one of the datasets"):
        warehouse.run(elsewhere, timeout_s=1)
    with pytest.raises(ValueError, match="timeout_s"):
        warehouse.run(warehouse.guard("SELECT 1"), timeout_s=0)


def test_database_errors_are_reported(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseQueryError, match=r"DuckDB could not run the query: .*no_such_column"):
        run(warehouse, "SELECT no_such_column FROM sales")


def test_hardening_holds_even_without_the_guard(platform: Platform, tmp_path: Path) -> None:
    """The connection the query process opens (``connect_hardened``), built here in this process."""
    record = platform.versions["sales@2"].record
    dataset = pads.dataset(
        key_of(platform.store, record.uri), filesystem=platform.store.filesystem(), format="parquet"
    )
    limits = QueryLimits(memory_limit_mb=256, threads=1, max_temp_mb=100, max_result_bytes=10_000)
    connection = connect_hardened([("sales", dataset)], limits, temp_directory=str(tmp_path / "spill"))
    parquet = platform.settings.object_store_root / key_of(platform.store, record.uri)
    secret_frame = pd.DataFrame({"secret": [1]})  # noqa: F841 - a replacement scan would find it by name
    target = tmp_path / "leak.csv"
    attempts = [
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT COUNT(*) FROM read_parquet('{parquet}')",  # noqa: S608 - the attack under test
        f"COPY sales TO '{target}'",
        f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET threads = 16",
        "SET memory_limit = '64GB'",
        "SET max_temp_directory_size = '1TB'",
        f"SET temp_directory = '{tmp_path}'",
        "SELECT * FROM secret_frame",
    ]
    with connection:
        for sql in attempts:
            with pytest.raises(duckdb.Error):
                connection.execute(sql).fetchall()
        assert not target.exists() and not (tmp_path / "other.duckdb").exists()
        settings = dict(connection.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration', 'threads', 'python_enable_replacements', 'memory_limit', "
            "'max_temp_directory_size', 'temp_directory')"
        ).fetchall())  # fmt: skip
        assert settings == {
            "enable_external_access": "false", "lock_configuration": "true", "threads": "1",
            "python_enable_replacements": "false", "memory_limit": "244.1 MiB",
            "max_temp_directory_size": "95.3 MiB", "temp_directory": str(tmp_path / "spill"),
        }  # fmt: skip
        assert connection.execute("SELECT COUNT(*) FROM sales").fetchall() == [(record.row_count,)]


def test_queries_run_under_the_configured_limits(platform: Platform) -> None:
    limits = {"memory_limit_mb": 256, "threads": 1, "max_temp_mb": 0, "max_result_bytes": 50_000}
    warehouse_settings = platform.settings.warehouse.model_validate(limits)
    settings = platform.settings.model_copy(update={"warehouse": warehouse_settings})
    with open_warehouse(settings, platform.catalog, ["sales@2"]) as limited:
        assert limited.limits == QueryLimits(
            memory_limit_mb=256, threads=1, max_temp_mb=0, max_result_bytes=50_000
        )
        # 5 rows of 9,000 characters fit in 50,000 bytes, 6 do not.
        assert len(run(limited, "SELECT repeat('x', 9000) FROM sales LIMIT 5")) == 5
        with pytest.raises(
            QueryLimitError,
            match=r"passed its limit of 50,000 bytes \(ODS_WAREHOUSE__MAX_RESULT_BYTES; 5 row",
        ):
            run(limited, "SELECT repeat('x', 9000) FROM sales")
        assert limited.query_process.pid is not None


# -- PostgreSQL ----------------------------------------------------------------------------------------

PG_ROWS = 2000


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throwaway database holding schema ``shop``: ``orders`` (allowlisted) and ``secrets`` (not)."""
    with temporary_database("ods_warehouse_") as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection = connection.execution_options(no_parameters=True)
            connection.exec_driver_sql("CREATE SCHEMA shop")
            connection.exec_driver_sql(
                "CREATE TABLE shop.orders (id integer PRIMARY KEY, customer_email text, region text, "
                "amount numeric(10, 2))"
            )
            connection.exec_driver_sql(
                "INSERT INTO shop.orders SELECT i, 'customer' || i || '@example.com', "  # noqa: S608
                "(ARRAY['North', 'South', 'East', 'West'])[i % 4 + 1], i % 250 "
                f"FROM generate_series(1, {PG_ROWS}) i"
            )
            connection.exec_driver_sql("CREATE TABLE shop.secrets (token text)")
            connection.exec_driver_sql("INSERT INTO shop.secrets VALUES ('do-not-read')")
        engine.dispose()
        yield url


@pytest.fixture
def pg_warehouse(pg_url: str) -> Iterator[SqlDatabaseWarehouse]:
    with SqlDatabaseWarehouse.open(pg_url, ["shop.orders"], max_rows=100) as opened:
        yield opened


@pytest.mark.postgres
def test_postgres_reads_allowlisted_tables(pg_warehouse: SqlDatabaseWarehouse) -> None:
    assert isinstance(pg_warehouse, Warehouse) and pg_warehouse.dialect == "postgres"
    (table,) = pg_warehouse.tables()
    assert table.name == "shop.orders"
    assert [(column.name, column.type) for column in table.columns] == [
        ("id", "INTEGER"), ("customer_email", "TEXT"), ("region", "TEXT"), ("amount", "NUMERIC(10, 2)"),
    ]  # fmt: skip
    assert table.columns[1].pii_kind == "email"
    assert all(row["customer_email"].startswith("c***@") for row in table.sample_rows)
    rows = run(
        pg_warehouse, "SELECT region, COUNT(*) FROM shop.orders WHERE region LIKE '%orth' GROUP BY region"
    )
    assert rows == [("North", PG_ROWS // 4)]
    capped = pg_warehouse.run(pg_warehouse.guard("SELECT id FROM shop.orders ORDER BY id"), timeout_s=10)
    assert capped.row_count == 100 and capped.truncated is True and capped.rows[0] == (1,)
    with pytest.raises(SqlRejected, match=r"'shop.secrets' is not one of the datasets"):
        pg_warehouse.guard("SELECT * FROM shop.secrets")


@pytest.mark.postgres
def test_postgres_transactions_are_read_only(pg_warehouse: SqlDatabaseWarehouse) -> None:
    with pg_warehouse.read_only(timeout_s=5) as connection:
        assert connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
        assert connection.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
        with pytest.raises(DBAPIError, match="read-only transaction"):
            connection.exec_driver_sql("DELETE FROM shop.orders")
    assert run(pg_warehouse, "SELECT COUNT(*) FROM shop.orders") == [(PG_ROWS,)]


@pytest.mark.postgres
def test_postgres_statement_timeout(pg_warehouse: SqlDatabaseWarehouse) -> None:
    slow = pg_warehouse.guard("SELECT COUNT(*) FROM shop.orders AS a, shop.orders AS b, shop.orders AS c")
    with pytest.raises(QueryTimeoutError, match=r"longer than its limit of 0\.5 s"):
        pg_warehouse.run(slow, timeout_s=TIMEOUT_S)
    with pytest.raises(WarehouseQueryError, match=r"could not run the query: .*no_such_column"):
        run(pg_warehouse, "SELECT no_such_column FROM shop.orders")
    assert run(pg_warehouse, "SELECT COUNT(*) FROM shop.orders") == [(PG_ROWS,)]


@pytest.mark.postgres
def test_postgres_missing_table_and_settings(pg_url: str) -> None:
    with (
        SqlDatabaseWarehouse.open(pg_url, ["shop.missing"]) as missing,
        pytest.raises(
            NotFoundError, match=r"'shop.missing' of ODS_WAREHOUSE__TABLES does not exist.*orders, secrets"
        ),
    ):
        missing.tables()
    with pytest.raises(SettingsError, match="ODS_WAREHOUSE__URL"):
        open_sql_database_warehouse(load_settings())
    configured = load_settings(warehouse={"url": pg_url, "tables": ["shop.orders"], "max_rows": 7})
    with open_sql_database_warehouse(configured) as opened:
        assert opened.guard("SELECT * FROM shop.orders").limit == 7


@pytest.mark.postgres
@pytest.mark.parametrize("sql", ANALYST_QUERIES["postgres"])
def test_postgres_runs_the_functions_analysts_use(pg_warehouse: SqlDatabaseWarehouse, sql: str) -> None:
    assert len(run(pg_warehouse, sql)) <= 100


@pytest.mark.postgres
def test_postgres_limits_apply_to_each_transaction(pg_url: str) -> None:
    limits = QueryLimits(memory_limit_mb=16, max_temp_mb=100, max_result_bytes=100_000)
    with SqlDatabaseWarehouse.open(pg_url, ["shop.orders"], limits=limits) as limited:
        with limited.read_only(timeout_s=5) as connection:
            # a sixteenth of the memory limit, lower than the server's 4MB; temp_file_limit as superuser
            assert connection.exec_driver_sql("SHOW work_mem").scalar() == "1MB"
            assert connection.exec_driver_sql("SHOW temp_file_limit").scalar() == "100MB"
        with pytest.raises(
            QueryLimitError,
            match=r"passed its limit of 100,000 bytes \(ODS_WAREHOUSE__MAX_RESULT_BYTES; 11 row",
        ):
            run(limited, "SELECT repeat('x', 9000) FROM shop.orders")
        with pytest.raises(SqlRejected, match="repeat\\(\\) may build at most 10,000 characters"):
            limited.guard("SELECT repeat('x', 2000000000) FROM shop.orders")
        assert run(limited, "SELECT count(*) FROM shop.orders") == [(PG_ROWS,)]
    spill = QueryLimits(memory_limit_mb=1, max_temp_mb=1)  # work_mem 64kB: this sort spills past 1 MB
    with (
        SqlDatabaseWarehouse.open(pg_url, ["shop.orders"], limits=spill) as small,
        pytest.raises(QueryLimitError, match=r"temporary file size exceeds temp_file_limit \(1024kB\)"),
    ):
        run(small, "SELECT a.customer_email FROM shop.orders AS a, shop.orders AS b ORDER BY 1 DESC")
    with (
        SqlDatabaseWarehouse.open(pg_url, ["shop.orders"]) as default,
        default.read_only(timeout_s=5) as connection,
    ):
        # the default 512 MB would allow 32MB: the server's own 4MB is never raised
        assert connection.exec_driver_sql("SHOW work_mem").scalar() == "4MB"


def test_sqlite_runs_the_functions_analysts_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE orders (id INTEGER, day TEXT, region TEXT, amount REAL)")
        connection.exec_driver_sql(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, f"2024-01-{i % 28 + 1:02d}", "NSEW"[i % 4], i * 1.5) for i in range(40)],
        )
    engine.dispose()
    with SqlDatabaseWarehouse.open(url, ["orders"]) as warehouse:
        assert warehouse.dialect == "sqlite"
        for sql in ANALYST_QUERIES["sqlite"]:
            assert run(warehouse, sql)
        with pytest.raises(SqlRejected, match="zeroblob"):
            warehouse.guard("SELECT length(zeroblob(1000000000))")
