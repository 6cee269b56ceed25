"""What every table group of the catalog shares: the engine, one short session per call, writes retried
on unique-key races, and the generic helpers (lookups by name, version getters, "not found" errors,
ORM row → frozen record).

The groups (``datasets.py``, ``models.py``, ``endpoints.py``, ``knowledge.py``, ``conversations.py``,
``watch.py``) are mixins over :class:`CatalogBase`; ``repository.Catalog`` composes them.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, get_args

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker
from sqlalchemy.orm.interfaces import ORMOption

from ods.adapters.catalog.database import begin_write, create_catalog_engine, migrate, translate_errors
from ods.adapters.catalog.schema import Dataset, KnowledgeBase, Model, NamedRow, VersionedRow, VersionRow
from ods.adapters.closing import Closeable
from ods.domain.copied_fields import copy_fields
from ods.domain.identity import DEFAULT_TENANT, check_tenant
from ods.domain.names import NAME_RULE, NameKind, check_name, display_name, is_valid_name
from ods.errors import CatalogError, NotFoundError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
RecordT = TypeVar("RecordT", bound="DataclassInstance")
NamedT = TypeVar("NamedT", bound=NamedRow)
OwnerT = TypeVar("OwnerT", bound=VersionedRow)
VersionT = TypeVar("VersionT", bound=VersionRow)
OwnerRecordT = TypeVar("OwnerRecordT")
VersionRecordT = TypeVar("VersionRecordT")

WRITE_ATTEMPTS = 5
"""How often a write is tried when a concurrent writer keeps winning the same unique key."""
_LISTED_NAMES = 20
_IN_CLAUSE_VALUES = 500
"""Values per IN (...) list: well under SQLite's oldest bound-parameter limit (999)."""


@dataclass(frozen=True)
class VersionedTable(Generic[OwnerT, VersionT, OwnerRecordT, VersionRecordT]):
    """A named table whose content lives in numbered versions (datasets, models), and the one generic
    path both take: lookup by name, the owner ensured and locked for numbering, add and get a version."""

    kind: NameKind
    owner: type[OwnerT]
    versions: type[VersionT]
    owner_key: InstrumentedAttribute[int]
    """The versions' foreign key to the owner (``DatasetVersion.dataset_id``)."""
    owner_record: Callable[[Session, OwnerT], OwnerRecordT]
    version_record: Callable[[VersionT, str], VersionRecordT]
    """A version row and its owner's name → its frozen record."""

    def named(self, session: Session, name: str, tenant: str) -> OwnerT:
        """``tenant``'s owner row called ``name``; NotFoundError listing the names it holds."""
        return require_named(session, self.owner, self.kind, name, tenant)

    def lock_owner(
        self,
        session: Session,
        name: str,
        description: str | None,
        tenant: str | None = None,
        created_by: str | None = None,
    ) -> OwnerT:
        """``tenant``'s owner row called ``name`` (created if missing, as ``tenant``'s (the default tenant's
        when None) and owned by ``created_by``; a given description replaces the stored one), locked
        until commit so concurrent writers number its versions one at a time. An existing row keeps its
        owner."""
        tenant = tenant or DEFAULT_TENANT
        query = select(self.owner).where(self.owner.name == name, self.owner.tenant == tenant)
        row = session.scalar(query.with_for_update())
        if row is None:
            owner = self.owner(name=name, description=description, tenant=tenant, owner=created_by)
            row = add_row(session, owner)
        elif description is not None and row.description != description:
            row.description = description
            session.flush()
        return row

    def add_version(self, session: Session, owner: OwnerT, **columns: Any) -> VersionT:
        """A new version row of ``owner`` holding ``columns``, numbered after its newest one (call with
        the owner locked, see :meth:`lock_owner`), added and flushed."""
        newest = session.scalar(select(func.max(self.versions.version)).where(self.owner_key == owner.id))
        number = (newest or 0) + 1
        return add_row(session, self.versions(**{self.owner_key.key: owner.id}, version=number, **columns))

    def get_version(self, session: Session, name: str, tenant: str, version: int | None) -> VersionRecordT:
        """Version ``version`` of ``tenant``'s ``name``, or its newest registered version when ``None``;
        NotFoundError naming the tenant's names or the versions there are."""
        owner = self.named(session, name, tenant)
        number, status = self.versions.version, self.versions.status
        wanted = status == "registered" if version is None else number == version
        query = select(self.versions).where(self.owner_key == owner.id, wanted)
        row = session.scalar(query.order_by(number.desc()).limit(1))
        if row is None:
            versions = session.execute(
                select(number, status).where(self.owner_key == owner.id).order_by(number)
            ).all()
            raise NotFoundError(_missing_version_message(self.kind, name, version, versions))
        return self.version_record(row, owner.name)


class CatalogBase(Closeable):
    """The lineage graph over one database, migrated to the newest schema on first use.

    ``tenant`` is the tenant of the rows it creates when a call names none (``ODS_TENANT`` for the CLI and
    the flows); the API names each caller's own. ``creator`` is, likewise, the owner of the datasets,
    models and knowledge bases it creates when a call names none (``ODS_OWNER`` for the CLI and the flows;
    None for the server, whose routes name each caller)."""

    def __init__(
        self,
        engine: Engine,
        *,
        auto_migrate: bool = True,
        tenant: str = DEFAULT_TENANT,
        creator: str | None = None,
    ) -> None:
        self._engine = engine
        self.tenant = tenant
        self.creator = creator
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._migrated = not auto_migrate
        self._migrate_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        echo: bool = False,
        connect_timeout_s: float = 5.0,
        tenant: str = DEFAULT_TENANT,
        creator: str | None = None,
    ) -> Self:
        """A catalog at ``url`` creating rows of ``tenant``, owned by ``creator`` unless a call names an
        owner (nothing connects until the first call)."""
        engine = create_catalog_engine(url, echo=echo, connect_timeout_s=connect_timeout_s)
        return cls(engine, tenant=tenant, creator=creator)

    @property
    def engine(self) -> Engine:
        """The underlying engine (for migrations and diagnostics)."""
        return self._engine

    def migrate(self) -> str:
        """Bring the schema to the newest revision now and return it (what ``ods init`` calls)."""
        revision = migrate(self._engine)
        self._migrated = True
        return revision

    def for_tenant(self, tenant: str) -> Self:
        """This catalog seen as ``tenant``: its lookups by name find ``tenant``'s rows and what it creates
        is ``tenant``'s (same engine, pool and migration state; nothing is opened)."""
        if tenant == self.tenant:
            return self
        view = copy.copy(self)
        view.tenant = check_tenant(tenant)
        return view

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def list_names(self) -> dict[NameKind, list[str]]:
        """The names of every knowledge base, dataset and model, sorted (three small queries, for
        ``ods doctor``'s check of the naming rule)."""

        def work(session: Session) -> dict[NameKind, list[str]]:
            columns: dict[NameKind, InstrumentedAttribute[str]] = {
                "knowledge base": KnowledgeBase.name,
                "dataset": Dataset.name,
                "model": Model.name,
            }
            return {
                kind: list(session.scalars(select(column).order_by(column)))
                for kind, column in columns.items()
            }

        return self._read(work)

    # -- generic paths shared by the table groups ---------------------------------------------------

    def _ensure(
        self,
        table: VersionedTable[Any, Any, OwnerRecordT, Any],
        name: str,
        description: str | None,
        tenant: str | None = None,
        owner: str | None = None,
    ) -> OwnerRecordT:
        """The dataset or model called ``name``, created if missing (owned by ``owner``); a given
        description replaces the stored one. The name is checked first: the last line behind the entry
        points' checks."""
        check_name(table.kind, name)

        def work(session: Session) -> OwnerRecordT:
            row = table.lock_owner(session, name, description, tenant or self.tenant, owner or self.creator)
            return table.owner_record(session, row)

        return self._write(work)

    def _list_named(
        self, entity: type[NamedT], record: Callable[[Session, NamedT], T], tenant: str | None = None
    ) -> list[T]:
        """Every row of a named table (datasets, models, knowledge bases), of ``tenant`` when given, by
        name."""

        def work(session: Session) -> list[T]:
            query = select(entity).order_by(entity.name)
            if tenant is not None:
                query = query.where(entity.tenant == tenant)
            rows = session.scalars(query).all()
            return [record(session, row) for row in rows]

        return self._read(work)

    # -- sessions ------------------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Session]:
        if not self._migrated:
            with self._migrate_lock:
                if not self._migrated:
                    self.migrate()
        with translate_errors(self._engine), self._sessions() as session:
            yield session

    def _read(self, work: Callable[[Session], T]) -> T:
        with self._session() as session:
            return work(session)

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, again when a concurrent writer took the same unique key."""
        attempt = 1
        while True:
            try:
                with self._session() as session, session.begin():
                    begin_write(session.connection())
                    return work(session)
            except IntegrityError as error:
                if not _is_unique_violation(error):
                    raise CatalogError(f"catalog refused the write: {_first_line(error.orig)}") from error
                if attempt >= WRITE_ATTEMPTS:
                    raise CatalogError(
                        f"catalog write still conflicts after {attempt} attempts: {_first_line(error.orig)}"
                    ) from error
                attempt += 1


def to_record(record: type[RecordT], row: object, **values: Any) -> RecordT:
    """``record`` filled from the attributes of ``row`` that bear its field names; ``values`` are the
    fields the row does not hold as they are (a joined name, a derived value)."""
    return copy_fields(record, row, **values)


def values_of(record: DataclassInstance) -> dict[str, Any]:
    """The fields of a record by name: the column values of the row it describes (a chunk, a citation)."""
    return {name: getattr(record, name) for name in _field_names(type(record))}


@cache
def _field_names(record: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(field.name for field in fields(record))


def parts(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices short enough for one IN (...) list."""
    for start in range(0, len(values), _IN_CLAUSE_VALUES):
        yield values[start : start + _IN_CLAUSE_VALUES]


def check_choice(what: str, value: str, choices: Any) -> None:
    """Statuses and roles come from code typed with a ``Literal``; a wrong one is a programming error."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


def add_row(session: Session, row: T) -> T:
    """``row`` added and flushed, so its generated id and column defaults are set; returns it."""
    session.add(row)
    session.flush()
    return row


def require_row(session: Session, entity: type[T], key: int | str, what: str, *options: ORMOption) -> T:
    """The row of ``entity`` with primary key ``key`` (loaded with ``options``); NotFoundError
    ``no <what> with id <key>`` (a string key quoted)."""
    row = session.get(entity, key, options=options)
    if row is None:
        raise not_found(what, key)
    return row


def not_found(what: str, key: int | str) -> NotFoundError:
    """The error for a missing row asked for by id (a string id quoted)."""
    return NotFoundError(f"no {what} with id {key!r}" if isinstance(key, str) else f"no {what} with id {key}")


def require_rows(
    session: Session, entity: type[T], key: InstrumentedAttribute[int], ids: Sequence[int], what: str
) -> list[T]:
    """The rows of ``entity`` whose ``key`` is in ``ids``; NotFoundError naming any that do not exist."""
    if not ids:
        return []
    rows = list(session.scalars(select(entity).where(key.in_(ids))))
    found = {getattr(row, key.key) for row in rows}
    missing = [value for value in ids if value not in found]
    if missing:
        raise NotFoundError(f"no {what} with id {', '.join(map(str, missing))}")
    return rows


def require_named(session: Session, entity: type[NamedT], kind: NameKind, name: str, tenant: str) -> NamedT:
    """``tenant``'s row of ``entity`` called ``name``; NotFoundError listing the names ``tenant`` holds
    (never another tenant's: its rows are as absent as missing ones)."""
    row = session.scalar(select(entity).where(entity.name == name, entity.tenant == tenant))
    if row is None:
        raise NotFoundError(_missing_name_message(session, kind, name, entity, tenant))
    return row


def _missing_name_message(session: Session, kind: str, name: str, entity: type[NamedRow], tenant: str) -> str:
    query = select(entity.name).where(entity.tenant == tenant).order_by(entity.name)
    names = list(session.scalars(query.limit(_LISTED_NAMES + 1)))
    asked = f"no {kind} named {name!r}"
    if not is_valid_name(name):
        asked += f" (not a valid name: {NAME_RULE})"
    if not names:
        return f"{asked}; the catalog holds no {kind}s yet"
    shown = ", ".join(map(display_name, names[:_LISTED_NAMES])) + (
        ", ..." if len(names) > _LISTED_NAMES else ""
    )
    return f"{asked}; known {kind}s: {shown}"


def _missing_version_message(
    kind: str, name: str, version: int | None, versions: Sequence[tuple[int, str]]
) -> str:
    existing = ", ".join(f"{number} ({status})" for number, status in versions) or "none"
    if version is None:
        return f"{kind} {name!r} has no registered version; versions: {existing}"
    return f"{kind} {name!r} has no version {version}; versions: {existing}"


def _is_unique_violation(error: IntegrityError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(error.orig)


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__
