"""``/api/v1/metadata``: the tables an agent may query, described (integration point 3, metadata side).

Two databases: ``datasets``, every dataset's newest registered version as one table (columns with types,
the stored profile and the personal-data kind the prepare step found), and, when ``ODS_WAREHOUSE__URL``
names one, ``warehouse``: the allowlisted tables of that read-only database (reflected column types,
personal data detected from names and a few sample values, as Text-to-SQL sees them).

``POST …/tables/search`` ranks the tables by meaning with the packaged embedder: each table and each of
its columns is embedded once per dataset version (per column set for a warehouse table) and kept in the
server's memory; a new version is embedded on the next search and the old one's vectors dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from ods.adapters.catalog.records import DatasetVersionRecord
from ods.adapters.warehouse import describe_version
from ods.api.deps import ServerResources, checked
from ods.api.envelope import Envelope, ok
from ods.api.tenancy import CallerTenant, owned_dataset
from ods.domain.pii import detect_pii_kind
from ods.domain.text_to_sql import TableDescription
from ods.errors import NotFoundError, SettingsError
from ods.factories import open_sql_database_warehouse

router = APIRouter(prefix="/api/v1/metadata", tags=["metadata"])

DATASETS_DB: Final = "datasets"
WAREHOUSE_DB: Final = "warehouse"
DatabaseName = Literal["datasets", "warehouse"]
MATCHED_COLUMN_MIN_SCORE = 0.3
MATCHED_COLUMNS = 3


class Database(BaseModel):
    name: DatabaseName = Field(description="datasets, or warehouse when ODS_WAREHOUSE__URL names one.")
    description: str
    table_count: int


class TableSummary(BaseModel):
    database: DatabaseName
    name: str = Field(description="The table's SQL name (a dataset's name; schema.table in a warehouse).")
    description: str | None = Field(description="The dataset's description, when it has one.")
    version: int | None = Field(description="The dataset version the table is (null for a warehouse table).")
    row_count: int | None
    column_count: int


class Column(BaseModel):
    name: str
    type: str = Field(description="SQL type as queries see it (DuckDB's for datasets).")
    description: str = Field(description="One line from the profile: nulls, range or distinct values.")
    pii_kind: str | None = Field(
        description="Personal data found in it (email, phone, id_card, bank_card, or a declared kind); "
        "its values are masked or hashed in the stored data."
    )
    profile: dict[str, Any] | None = Field(
        description="The stored column profile (dtype, nulls, distinct, min, max, mean, top values); "
        "null for a warehouse table."
    )


class TableDetail(TableSummary):
    columns: list[Column]
    source: str = Field(description="Where it comes from: NAME@VERSION, or 'warehouse table …'.")


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=1000, description="What the data should be about.")
    top_k: int = Field(default=5, ge=1, le=50, description="How many tables to return.")
    databases: list[DatabaseName] | None = Field(
        default=None, description="Databases to search; unset: every one there is."
    )


class ColumnMatch(BaseModel):
    name: str
    score: float = Field(description="Cosine similarity of the column's description to the query.")


class TableMatch(BaseModel):
    database: DatabaseName
    table: str
    description: str | None
    score: float = Field(
        description="The higher of the table's own similarity and the mean of its two best columns'."
    )
    matched_columns: list[ColumnMatch] = Field(
        description=f"Up to {MATCHED_COLUMNS} columns closest to the query (similarity ≥ "
        f"{MATCHED_COLUMN_MIN_SCORE})."
    )


# -- what the databases hold ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataTable:
    """A table of one of the databases, described as Text-to-SQL sees it."""

    database: DatabaseName
    description: TableDescription
    key: tuple[Any, ...]
    """What the table's vectors depend on: its dataset version id, or a warehouse table's columns."""
    version: DatasetVersionRecord | None = None
    dataset_description: str | None = None


def _dataset_tables(resources: ServerResources, tenant: str) -> list[MetadataTable]:
    """One table per dataset of ``tenant`` that is not archived: its newest registered version."""
    catalog = resources.catalog.for_tenant(tenant)
    described = {
        record.name: record.description
        for record in catalog.list_datasets(include_archived=False, tenant=tenant)
    }
    return [
        _dataset_table(record, described[record.dataset_name])
        for record in catalog.latest_registered_versions(tenant=tenant)
        if record.dataset_name in described
    ]


def _dataset_table(record: DatasetVersionRecord, description: str | None) -> MetadataTable:
    return MetadataTable(
        database=DATASETS_DB,
        description=describe_version(record, description=description),
        key=(record.id,),
        version=record,
        dataset_description=description,
    )


def _warehouse_tables(resources: ServerResources) -> list[MetadataTable]:
    """The configured warehouse's tables, reflected now (nothing when none is configured)."""
    from sqlalchemy.exc import SQLAlchemyError

    if resources.settings.warehouse.url is None:
        return []
    try:
        with open_sql_database_warehouse(resources.settings) as warehouse:
            tables = warehouse.tables()
    except SQLAlchemyError as error:
        raise SettingsError(
            f"the warehouse database of ODS_WAREHOUSE__URL did not answer ({type(error).__name__}); check "
            "that it is up and reachable from the server"
        ) from None
    return [
        MetadataTable(
            database=WAREHOUSE_DB,
            description=table,
            key=tuple((column.name, column.type) for column in table.columns),
        )
        for table in tables
    ]


def _database(name: str, resources: ServerResources) -> DatabaseName:
    if name == DATASETS_DB:
        return DATASETS_DB
    if name == WAREHOUSE_DB and resources.settings.warehouse.url is not None:
        return WAREHOUSE_DB
    known = [DATASETS_DB, *([WAREHOUSE_DB] if resources.settings.warehouse.url is not None else [])]
    raise NotFoundError(f"no database {name!r}; databases: {', '.join(known)}")


def _tables(database: DatabaseName, resources: ServerResources, tenant: str) -> list[MetadataTable]:
    return _dataset_tables(resources, tenant) if database == DATASETS_DB else _warehouse_tables(resources)


def _summary(table: MetadataTable) -> TableSummary:
    description = table.description
    return TableSummary(
        database=table.database,
        name=description.name,
        description=table.dataset_description,
        version=table.version.version if table.version else None,
        row_count=description.row_count,
        column_count=len(description.columns),
    )


# -- the kept vectors --------------------------------------------------------------------------------------

Vectors = tuple[NDArray[np.float32], NDArray[np.float32]]


def table_text(table: TableDescription, description: str | None) -> str:
    """What a table is about, as one text: its name, description and column names."""
    columns = ", ".join(column.name.replace("_", " ") for column in table.columns)
    about = f": {description}" if description else ""
    return f"table {table.name.replace('_', ' ')}{about}. Columns: {columns}"


def column_text(table: TableDescription, column_index: int) -> str:
    """What a column is about: its name, table, type and profile line."""
    column = table.columns[column_index]
    line = f"; {column.description}" if column.description else ""
    return f"{column.name.replace('_', ' ')} ({column.type}) in table {table.name.replace('_', ' ')}{line}"


class TableVectors:
    """Each table's vector and its columns' vectors, kept per (database, table) while its key (the dataset
    version, or the warehouse table's columns) stays the same."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], tuple[tuple[Any, ...], Vectors]] = {}

    def of(
        self, tables: Sequence[MetadataTable], embed: Callable[[Sequence[str]], NDArray[np.float32]]
    ) -> list[Vectors]:
        """The vectors of ``tables`` in order; those not kept (or kept for an older key) are embedded now
        in one batch with ``embed`` (the caller holds the model lock)."""
        with self._lock:
            missing = [
                table
                for table in tables
                if self._kept.get((table.database, table.description.name), ((), None))[0] != table.key
            ]
            if missing:
                texts: list[str] = []
                for table in missing:
                    texts.append(table_text(table.description, table.dataset_description))
                    texts += [
                        column_text(table.description, i) for i in range(len(table.description.columns))
                    ]
                embedded = embed(texts)
                start = 0
                for table in missing:
                    count = len(table.description.columns)
                    rows = embedded[start : start + 1 + count]
                    self._kept[(table.database, table.description.name)] = (table.key, (rows[0], rows[1:]))
                    start += 1 + count
            present = {(table.database, table.description.name) for table in tables}
            for name in [name for name in self._kept if name[0] in {t.database for t in tables}]:
                if name not in present:
                    del self._kept[name]  # a dataset archived, a table dropped from the allowlist
            return [self._kept[(table.database, table.description.name)][1] for table in tables]


def table_vectors(request: Request) -> TableVectors:
    """The app's kept table vectors (``create_app`` makes them)."""
    vectors: TableVectors = request.app.state.table_vectors
    return vectors


TableVectorsDep = Annotated[TableVectors, Depends(table_vectors)]


# -- routes ------------------------------------------------------------------------------------------------


@router.get("/databases", summary="Databases an agent may query", response_model=Envelope[list[Database]])
def list_databases(resources: ServerResources, tenant: CallerTenant) -> Envelope[list[Database]]:
    """``datasets`` (the registered datasets, one table each) and the configured warehouse, if any."""
    databases = [
        Database(
            name=DATASETS_DB,
            description="Registered datasets, one table per dataset (its newest registered version).",
            table_count=len(_dataset_tables(resources, tenant)),
        )
    ]
    warehouse = resources.settings.warehouse
    if warehouse.url is not None:
        databases.append(
            Database(
                name=WAREHOUSE_DB,
                description="The read-only warehouse database of ODS_WAREHOUSE__URL: its allowlisted tables.",
                table_count=len(dict.fromkeys(warehouse.tables)),
            )
        )
    return ok(databases)


@router.get(
    "/databases/{db}/tables", summary="The tables of a database", response_model=Envelope[list[TableSummary]]
)
def list_tables(db: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[list[TableSummary]]:
    """Each table with its row and column counts (a dataset's version and description)."""
    return ok([_summary(table) for table in _tables(_database(db, resources), resources, tenant)])


@router.get(
    "/databases/{db}/tables/{table}",
    summary="A table's columns with types, profile and personal-data flags",
    response_model=Envelope[TableDetail],
)
def get_table(db: str, table: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[TableDetail]:
    """Columns with SQL types, a one-line description, the stored profile and the PII kind."""
    database = _database(db, resources)
    if database == DATASETS_DB:
        checked("dataset", table)
        description = owned_dataset(
            resources.catalog.for_tenant(tenant), table, tenant
        ).description  # 404 naming the tenant's
        record = resources.catalog.for_tenant(tenant).get_dataset_version(table)
        found = _dataset_table(record, description)
    else:
        tables = _warehouse_tables(resources)
        match = [item for item in tables if item.description.name == table]
        if not match:
            names = ", ".join(item.description.name for item in tables) or "none"
            raise NotFoundError(f"no table {table!r} in the warehouse; its tables: {names}")
        found = match[0]
    profiles: dict[str, Any] = found.version.profile.get("columns", {}) if found.version else {}
    columns = [
        Column(
            name=column.name,
            type=column.type,
            description=column.description,
            pii_kind=column.pii_kind or _pii_from_name(column.name, profiles.get(column.name)),
            profile=profiles.get(column.name),
        )
        for column in found.description.columns
    ]
    summary = _summary(found)
    return ok(TableDetail(**summary.model_dump(), columns=columns, source=found.description.dataset))


def _pii_from_name(name: str, profile: dict[str, Any] | None) -> str | None:
    """A dataset column the prepare step left unflagged, checked again from its name and top values
    (versions profiled before PII detection carry no kind)."""
    if profile is not None and "pii_kind" in profile:
        return None  # the prepare step looked and found none
    values = [item.get("value") for item in (profile or {}).get("top_values") or []]
    return detect_pii_kind(name, [value for value in values if isinstance(value, str)])


@router.post(
    "/tables/search",
    summary="Tables whose description or columns match a query in meaning",
    response_model=Envelope[list[TableMatch]],
)
def search_tables(
    request: SearchRequest, resources: ServerResources, vectors: TableVectorsDep, tenant: CallerTenant
) -> Envelope[list[TableMatch]]:
    """Ranked by the packaged embedder's cosine similarity; each table's vectors are computed once per
    dataset version and kept in the server."""
    databases = request.databases or [DATASETS_DB, WAREHOUSE_DB]
    tables = [
        *(_dataset_tables(resources, tenant) if DATASETS_DB in databases else []),
        *(_warehouse_tables(resources) if WAREHOUSE_DB in databases else []),
    ]
    if not tables:
        return ok([])
    with resources.model_lock:
        embedder = resources.embedder
        stored = vectors.of(tables, embedder.embed)
        query = embedder.embed([request.query])[0]
    matches = []
    for table, (table_vector, column_matrix) in zip(tables, stored, strict=True):
        column_scores = column_matrix @ query if len(column_matrix) else np.empty(0, dtype=np.float32)
        best = np.sort(column_scores)[::-1]
        score = max(float(table_vector @ query), float(best[:2].mean()) if len(best) else -1.0)
        ranked = sorted(
            zip(table.description.columns, column_scores.tolist(), strict=True), key=lambda item: -item[1]
        )
        matches.append(
            TableMatch(
                database=table.database,
                table=table.description.name,
                description=table.dataset_description,
                score=round(score, 4),
                matched_columns=[
                    ColumnMatch(name=column.name, score=round(value, 4))
                    for column, value in ranked[:MATCHED_COLUMNS]
                    if value >= MATCHED_COLUMN_MIN_SCORE
                ],
            )
        )
    matches.sort(key=lambda match: -match.score)
    return ok(matches[: request.top_k])
