"""``DuckDBWarehouse``: an in-memory DuckDB over registered dataset versions, queried in a process of its
own (``ods.adapters.warehouse.query_process``) under the limits of ``ODS_WAREHOUSE__*``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ods.adapters.closing import Closeable
from ods.adapters.warehouse.base import (
    DEFAULT_MAX_ROWS,
    QueryLimitError,
    QueryResult,
    WarehouseQueryError,
    check_guarded,
    timeout_error,
    too_large_error,
)
from ods.adapters.warehouse.query_process import DuckDBProcess, QueryLimits, QueryOutcome
from ods.domain.sql_guard import GuardedQuery, guard_sql
from ods.domain.text_to_sql import MAX_SAMPLE_ROWS, TableDescription, describe_dataset
from ods.errors import NotFoundError, OdsError

if TYPE_CHECKING:
    import pyarrow.dataset

    from ods.adapters.catalog import DatasetCatalog
    from ods.adapters.catalog.records import DatasetVersionRecord
    from ods.adapters.object_store import ObjectStore


@dataclass(frozen=True)
class _RegisteredTable:
    description: TableDescription
    dataset: pyarrow.dataset.Dataset


class DuckDBWarehouse(Closeable):
    """An in-memory DuckDB over registered dataset versions (one relation each, named like the dataset).

    Construct it with :meth:`from_versions` (or :func:`open_warehouse`). Queries run one at a time in the
    warehouse's query process, which starts with the warehouse (its half-second start-up overlaps the
    caller's prompt building and model call) and is replaced after a query it had to be killed for.
    """

    dialect = "duckdb"

    def __init__(
        self,
        tables: Sequence[tuple[TableDescription, pyarrow.dataset.Dataset]],
        *,
        limits: QueryLimits | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self._tables = [_RegisteredTable(description, dataset) for description, dataset in tables]
        names = [entry.description.name for entry in self._tables]
        if len(set(names)) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise OdsError(
                f"dataset {', '.join(map(repr, repeated))} is named more than once; "
                "query one version of each dataset at a time"
            )
        self.limits = limits or QueryLimits()
        self._max_rows = max_rows
        self._process = DuckDBProcess(
            [(entry.description.name, entry.dataset) for entry in self._tables], self.limits
        )

    @classmethod
    def from_versions(
        cls,
        versions: Sequence[DatasetVersionRecord],
        store: ObjectStore,
        *,
        limits: QueryLimits | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        sample_rows: int = MAX_SAMPLE_ROWS,
    ) -> DuckDBWarehouse:
        """A warehouse over these registered versions, read from ``store`` (local or S3)."""
        import pyarrow.dataset as pads

        from ods.adapters.object_store import key_of

        filesystem = store.filesystem()
        tables = []
        for record in versions:
            if record.status != "registered":
                raise OdsError(
                    f"dataset {record.dataset_name!r} v{record.version} is {record.status}, not registered "
                    f"({record.reason or 'no reason recorded'}); query a registered version"
                )
            dataset = pads.dataset(key_of(store, record.uri), filesystem=filesystem, format="parquet")
            rows = dataset.head(sample_rows).to_pylist() if sample_rows > 0 else []
            tables.append((describe_version(record, sample_rows=rows), dataset))
        return cls(tables, limits=limits, max_rows=max_rows)

    @property
    def query_process(self) -> DuckDBProcess:
        """The process the queries run in (its pid and the last query's peak memory, for diagnostics)."""
        return self._process

    def tables(self) -> list[TableDescription]:
        return [entry.description for entry in self._tables]

    def guard(self, sql: str, *, max_rows: int | None = None) -> GuardedQuery:
        return guard_sql(
            sql,
            allowed_tables=[entry.description.name for entry in self._tables],
            dialect=self.dialect,
            max_rows=max_rows or self._max_rows,
        )

    def run(self, guarded: GuardedQuery, *, timeout_s: float) -> QueryResult:
        from ods.adapters.warehouse.query_process import DuckDBProcessError

        checked = self.guard(check_guarded(guarded, timeout_s).sql, max_rows=guarded.limit)
        try:
            outcome = self._process.query(checked.sql, max_rows=checked.limit, timeout_s=timeout_s)
        except DuckDBProcessError as error:
            raise WarehouseQueryError(str(error)) from None
        if outcome.kind != "rows":
            raise self._error_for(outcome, timeout_s)
        return QueryResult(
            sql=checked.sql,
            columns=outcome.columns,
            rows=outcome.rows,
            row_count=len(outcome.rows),
            truncated=guarded.capped and len(outcome.rows) >= checked.limit,
            seconds=outcome.seconds,
        )

    def _error_for(self, outcome: QueryOutcome, timeout_s: float) -> WarehouseQueryError:
        limits = self.limits
        if outcome.kind == "timeout":
            return timeout_error(timeout_s)
        if outcome.kind == "too_large":
            return too_large_error(limits, f"{outcome.detail} before it")
        if outcome.kind == "temp":
            return QueryLimitError(
                f"the query needed more temporary disk than its limit of {limits.max_temp_mb} MB "
                f"(ODS_WAREHOUSE__MAX_TEMP_MB) and was stopped ({outcome.detail}); "
                "ask for less (filter, aggregate) or raise the limit"
            )
        if outcome.kind in ("memory", "died"):
            cause = (
                outcome.detail if outcome.kind == "memory" else f"{outcome.detail}, most likely out of memory"
            )
            return QueryLimitError(
                f"the query needed more memory than its limit of {limits.memory_limit_mb} MB "
                f"(ODS_WAREHOUSE__MEMORY_LIMIT_MB) and was stopped ({cause}); "
                "ask for less (filter, aggregate, fewer or shorter values) or raise the limit"
            )
        return WarehouseQueryError(f"DuckDB could not run the query: {outcome.detail}")

    def close(self) -> None:
        self._process.close()


def describe_version(
    record: DatasetVersionRecord,
    *,
    sample_rows: Sequence[Mapping[str, object]] = (),
    description: str | None = None,
) -> TableDescription:
    """The table a registered dataset version is to Text-to-SQL, from its catalog record."""
    return describe_dataset(
        record.dataset_name,
        version=record.version,
        row_count=record.row_count,
        schema=record.schema,
        profile=record.profile,
        sample_rows=sample_rows,
        description=description,
    )


def resolve_dataset_versions(
    catalog: DatasetCatalog, datasets: Sequence[str] | None
) -> list[DatasetVersionRecord]:
    """The versions to query: the newest registered one of every dataset, or the refs given (``name@v``)."""
    from ods.domain.refs import parse_dataset_ref

    registered = catalog.latest_registered_versions()
    listing = ", ".join(f"{record.dataset_name}@{record.version}" for record in registered) or "none"
    if datasets is None:
        if not registered:
            raise NotFoundError(
                "the catalog holds no registered dataset to query; register one with `ods datasets prepare`"
            )
        return registered
    if isinstance(datasets, str):
        raise TypeError("datasets must be a sequence of dataset refs, not a single string")
    versions = []
    for ref in datasets:
        name, version = parse_dataset_ref(ref)
        try:
            record = catalog.get_dataset_version(name, version)
        except NotFoundError as error:
            raise NotFoundError(
                f"{ref!r} cannot be queried: {error}; registered datasets: {listing}"
            ) from None
        if record.status != "registered":
            raise OdsError(
                f"{ref!r} cannot be queried: version {record.version} of {name!r} was {record.status} "
                f"({record.reason or 'no reason recorded'}); registered datasets: {listing}"
            )
        versions.append(record)
    return versions
