"""The catalog repository: every read and write of the lineage graph, each in its own short transaction.

Methods return frozen records, never live ORM objects, so callers cannot lazy-load after the session has
closed. Writes that name their content (dataset versions, document versions, chunks) are idempotent; writes
that race on a unique key are retried, so concurrent flows never register the same thing twice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, get_args

from sqlalchemy import Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased, selectinload, sessionmaker

from ods.adapters.catalog.database import begin_write, create_catalog_engine, migrate, translate_errors
from ods.adapters.catalog.records import (
    ChunkRecord,
    ChunkSource,
    CitationRecord,
    ConversationRecord,
    DatasetRecord,
    DatasetVersionRecord,
    DocumentRecord,
    EndpointLineage,
    EndpointRecord,
    IndexedDocument,
    KnowledgeBaseCounts,
    KnowledgeBaseRecord,
    MessageRecord,
    ModelRecord,
    ModelVersionRecord,
    ReplacedVersion,
    ValidationRunRecord,
    WatchedObjectRecord,
    WatchedObjectState,
)
from ods.adapters.catalog.schema import (
    Chunk,
    Citation,
    Conversation,
    Dataset,
    DatasetStatus,
    DatasetVersion,
    Document,
    DocumentStatus,
    DocumentVersion,
    Endpoint,
    EndpointBackend,
    EndpointStatus,
    KnowledgeBase,
    Message,
    MessageRole,
    Model,
    ModelStatus,
    ModelVersion,
    ValidationRun,
    WatchedObject,
    utcnow,
)
from ods.domain.names import NAME_RULE, NameKind, check_name, display_name, is_valid_name
from ods.errors import CatalogError, NotFoundError

T = TypeVar("T")
WRITE_ATTEMPTS = 5
"""How often a write is tried when a concurrent writer keeps winning the same unique key."""
_LISTED_NAMES = 20
_IN_CLAUSE_VALUES = 500
"""Values per IN (...) list: well under SQLite's oldest bound-parameter limit (999)."""


class Catalog:
    """The lineage graph over one database, migrated to the newest schema on first use."""

    def __init__(self, engine: Engine, *, auto_migrate: bool = True) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._migrated = not auto_migrate
        self._migrate_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, echo: bool = False, connect_timeout_s: float = 5.0) -> Self:
        """A catalog at ``url`` (nothing connects until the first call)."""
        return cls(create_catalog_engine(url, echo=echo, connect_timeout_s=connect_timeout_s))

    @property
    def engine(self) -> Engine:
        """The underlying engine (for migrations and diagnostics)."""
        return self._engine

    def migrate(self) -> str:
        """Bring the schema to the newest revision now and return it (what ``ods init`` calls)."""
        revision = migrate(self._engine)
        self._migrated = True
        return revision

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- datasets -------------------------------------------------------------------------------------

    def ensure_dataset(self, name: str, description: str | None = None) -> DatasetRecord:
        """The dataset called ``name``, created if missing; a given description replaces the stored one."""
        _check_name("dataset", name)

        def work(session: Session) -> DatasetRecord:
            dataset = _get_or_create_dataset(session, name, description)
            return _dataset_record(session, dataset)

        return self._write(work)

    def add_dataset_version(
        self,
        dataset_name: str,
        *,
        content_hash: str,
        uri: str,
        schema: dict[str, Any],
        profile: dict[str, Any],
        row_count: int,
        size_bytes: int,
        status: DatasetStatus,
        source_uri: str | None = None,
        source_etag: str | None = None,
        source_sha256: str | None = None,
        spec_hash: str | None = None,
        flow_run_id: str | None = None,
        parents: Iterable[int] = (),
        reason: str | None = None,
        description: str | None = None,
    ) -> DatasetVersionRecord:
        """Record a dataset version, numbered after the dataset's newest one.

        Idempotent by content: when ``content_hash`` is already recorded for the dataset, that version is
        returned unchanged, whatever its status. ``parents`` are ids of the versions it was derived from.
        """
        _check_name("dataset", dataset_name)
        _check_choice("dataset status", status, DatasetStatus)
        parent_ids = sorted(set(parents))

        def work(session: Session) -> DatasetVersionRecord:
            dataset = _get_or_create_dataset(session, dataset_name, description)
            existing = session.scalar(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.content_hash == content_hash
                )
            )
            if existing is not None:
                return _dataset_version_record(existing, dataset.name)
            parent_rows = _require_rows(
                session, DatasetVersion, DatasetVersion.id, parent_ids, "dataset version"
            )
            newest = session.scalar(
                select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
            )
            row = DatasetVersion(
                dataset_id=dataset.id,
                version=(newest or 0) + 1,
                content_hash=content_hash,
                uri=uri,
                schema=schema,
                profile=profile,
                row_count=row_count,
                size_bytes=size_bytes,
                status=status,
                reason=reason,
                source_uri=source_uri,
                source_etag=source_etag,
                source_sha256=source_sha256,
                spec_hash=spec_hash,
                flow_run_id=flow_run_id,
                parents=parent_rows,
            )
            session.add(row)
            session.flush()
            return _dataset_version_record(row, dataset.name)

        return self._write(work)

    def find_dataset_version(
        self, name: str, *, source_sha256: str, spec_hash: str
    ) -> DatasetVersionRecord | None:
        """The newest version of ``name`` made from these source bytes with this spec, if any."""

        def work(session: Session) -> DatasetVersionRecord | None:
            row = session.scalar(
                select(DatasetVersion)
                .join(Dataset)
                .where(
                    Dataset.name == name,
                    DatasetVersion.source_sha256 == source_sha256,
                    DatasetVersion.spec_hash == spec_hash,
                )
                .options(selectinload(DatasetVersion.parents))
                .order_by(DatasetVersion.version.desc())
                .limit(1)
            )
            return None if row is None else _dataset_version_record(row, name)

        return self._read(work)

    def get_dataset_version(self, name: str, version: int | None = None) -> DatasetVersionRecord:
        """Version ``version`` of dataset ``name``, or its newest registered version when ``None``."""

        def work(session: Session) -> DatasetVersionRecord:
            dataset = _dataset_named(session, name)
            query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
            if version is None:
                query = query.where(DatasetVersion.status == "registered")
            else:
                query = query.where(DatasetVersion.version == version)
            row = session.scalar(query.order_by(DatasetVersion.version.desc()).limit(1))
            if row is None:
                versions = session.execute(
                    select(DatasetVersion.version, DatasetVersion.status)
                    .where(DatasetVersion.dataset_id == dataset.id)
                    .order_by(DatasetVersion.version)
                ).all()
                raise NotFoundError(_missing_version_message("dataset", name, version, versions))
            return _dataset_version_record(row, dataset.name)

        return self._read(work)

    def list_datasets(self) -> list[DatasetRecord]:
        """Every dataset, by name."""

        def work(session: Session) -> list[DatasetRecord]:
            datasets = session.scalars(select(Dataset).order_by(Dataset.name)).all()
            return [_dataset_record(session, dataset) for dataset in datasets]

        return self._read(work)

    def list_dataset_versions(self, name: str) -> list[DatasetVersionRecord]:
        """Every version of dataset ``name`` (registered and rejected), oldest first."""

        def work(session: Session) -> list[DatasetVersionRecord]:
            dataset = _dataset_named(session, name)
            rows = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset.id)
                .options(selectinload(DatasetVersion.parents))
                .order_by(DatasetVersion.version)
            ).all()
            return [_dataset_version_record(row, dataset.name) for row in rows]

        return self._read(work)

    def add_validation_run(
        self,
        dataset_version_id: int,
        *,
        success: bool,
        results: dict[str, Any],
        quarantine_uri: str | None = None,
    ) -> ValidationRunRecord:
        """Record the outcome of validating a dataset version."""

        def work(session: Session) -> ValidationRunRecord:
            _require_rows(session, DatasetVersion, DatasetVersion.id, [dataset_version_id], "dataset version")
            row = ValidationRun(
                dataset_version_id=dataset_version_id,
                success=success,
                results=results,
                quarantine_uri=quarantine_uri,
            )
            session.add(row)
            session.flush()
            return _validation_run_record(row)

        return self._write(work)

    def validation_runs(self, dataset_version_id: int) -> list[ValidationRunRecord]:
        """Every validation run of a dataset version, oldest first."""

        def work(session: Session) -> list[ValidationRunRecord]:
            rows = session.scalars(
                select(ValidationRun)
                .where(ValidationRun.dataset_version_id == dataset_version_id)
                .order_by(ValidationRun.id)
            ).all()
            return [_validation_run_record(row) for row in rows]

        return self._read(work)

    def latest_registered_versions(self) -> list[DatasetVersionRecord]:
        """The newest registered version of every dataset that has one, by dataset name (Text-to-SQL)."""

        def work(session: Session) -> list[DatasetVersionRecord]:
            newest = (
                select(DatasetVersion.dataset_id, func.max(DatasetVersion.version).label("version"))
                .where(DatasetVersion.status == "registered")
                .group_by(DatasetVersion.dataset_id)
                .subquery()
            )
            rows = session.execute(
                select(DatasetVersion, Dataset.name)
                .join(
                    newest,
                    (DatasetVersion.dataset_id == newest.c.dataset_id)
                    & (DatasetVersion.version == newest.c.version),
                )
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .options(selectinload(DatasetVersion.parents))
                .order_by(Dataset.name)
            ).all()
            return [_dataset_version_record(row, name) for row, name in rows]

        return self._read(work)

    # -- models and endpoints ------------------------------------------------------------------------

    def ensure_model(self, name: str, description: str | None = None) -> ModelRecord:
        """The model called ``name``, created if missing; a given description replaces the stored one."""
        _check_name("model", name)

        def work(session: Session) -> ModelRecord:
            return _model_record(_get_or_create_model(session, name, description))

        return self._write(work)

    def add_model_version(
        self,
        model_name: str,
        *,
        trainer: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        artifact_uri: str,
        dataset_version_id: int | None = None,
        code_version: str | None = None,
        flow_run_id: str | None = None,
        status: ModelStatus = "registered",
    ) -> ModelVersionRecord:
        """Record a trained model version, numbered after the model's newest one.

        Nothing registers twice: a version already recorded for the same model and ``flow_run_id`` (a
        retried run) or ``artifact_uri`` (the artifacts of one training request, e.g. two runs of it at
        once; a losing insert is retried and finds the winner's row) is returned unchanged.
        """
        _check_name("model", model_name)
        _check_choice("model status", status, ModelStatus)

        def work(session: Session) -> ModelVersionRecord:
            model = _get_or_create_model(session, model_name, None)
            same_run_or_artifacts = ModelVersion.artifact_uri == artifact_uri
            if flow_run_id is not None:
                same_run_or_artifacts = or_(same_run_or_artifacts, ModelVersion.flow_run_id == flow_run_id)
            existing = session.scalar(
                select(ModelVersion)
                .where(ModelVersion.model_id == model.id, same_run_or_artifacts)
                .order_by(ModelVersion.version)
                .limit(1)
            )
            if existing is not None:
                return _model_version_record(existing, model.name)
            if dataset_version_id is not None:
                _require_rows(
                    session, DatasetVersion, DatasetVersion.id, [dataset_version_id], "dataset version"
                )
            newest = session.scalar(
                select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
            )
            row = ModelVersion(
                model_id=model.id,
                version=(newest or 0) + 1,
                trainer=trainer,
                params=params,
                metrics=metrics,
                artifact_uri=artifact_uri,
                dataset_version_id=dataset_version_id,
                code_version=code_version,
                flow_run_id=flow_run_id,
                status=status,
            )
            session.add(row)
            session.flush()
            return _model_version_record(row, model.name)

        return self._write(work)

    def get_model_version(self, name: str, version: int | None = None) -> ModelVersionRecord:
        """Version ``version`` of model ``name``, or its newest registered version when ``None``."""

        def work(session: Session) -> ModelVersionRecord:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                raise NotFoundError(_missing_name_message(session, "model", name, Model.name))
            query = select(ModelVersion).where(ModelVersion.model_id == model.id)
            if version is None:
                query = query.where(ModelVersion.status == "registered")
            else:
                query = query.where(ModelVersion.version == version)
            row = session.scalar(query.order_by(ModelVersion.version.desc()).limit(1))
            if row is None:
                versions = session.execute(
                    select(ModelVersion.version, ModelVersion.status)
                    .where(ModelVersion.model_id == model.id)
                    .order_by(ModelVersion.version)
                ).all()
                raise NotFoundError(_missing_version_message("model", name, version, versions))
            return _model_version_record(row, model.name)

        return self._read(work)

    def add_endpoint(
        self,
        model_version_id: int,
        *,
        backend: EndpointBackend,
        url: str,
        status: EndpointStatus = "starting",
    ) -> EndpointRecord:
        """Record an endpoint serving a model version."""
        _check_choice("endpoint backend", backend, EndpointBackend)
        _check_choice("endpoint status", status, EndpointStatus)

        def work(session: Session) -> EndpointRecord:
            _require_rows(session, ModelVersion, ModelVersion.id, [model_version_id], "model version")
            row = Endpoint(model_version_id=model_version_id, backend=backend, url=url, status=status)
            session.add(row)
            session.flush()
            return _endpoint_record(session, row)

        return self._write(work)

    def set_endpoint_status(
        self, endpoint_id: int, status: EndpointStatus, *, log_tail: str | None = None, url: str | None = None
    ) -> EndpointRecord:
        """Move an endpoint to ``status``; a given ``log_tail`` or ``url`` replaces the stored one."""
        _check_choice("endpoint status", status, EndpointStatus)

        def work(session: Session) -> EndpointRecord:
            row = session.get(Endpoint, endpoint_id)
            if row is None:
                raise NotFoundError(f"no endpoint with id {endpoint_id}")
            row.status = status
            if log_tail is not None:
                row.log_tail = log_tail
            if url is not None:
                row.url = url
            session.flush()
            return _endpoint_record(session, row)

        return self._write(work)

    def active_endpoint(self, model_name: str) -> EndpointRecord | None:
        """The most recently activated endpoint serving any version of ``model_name``, if one is active."""

        def work(session: Session) -> EndpointRecord | None:
            row = session.scalar(
                select(Endpoint)
                .join(ModelVersion, Endpoint.model_version_id == ModelVersion.id)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(Model.name == model_name, Endpoint.status == "active")
                .order_by(Endpoint.updated_at.desc(), Endpoint.id.desc())
                .limit(1)
            )
            return None if row is None else _endpoint_record(session, row)

        return self._read(work)

    def lineage_of_endpoint(self, endpoint_id: int) -> EndpointLineage:
        """Endpoint → model version → dataset version → source URI and ETag, in one query."""

        def work(session: Session) -> EndpointLineage:
            found = session.execute(
                select(Endpoint, ModelVersion, Model, DatasetVersion, Dataset)
                .join(ModelVersion, Endpoint.model_version_id == ModelVersion.id)
                .join(Model, ModelVersion.model_id == Model.id)
                .outerjoin(DatasetVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
                .outerjoin(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .where(Endpoint.id == endpoint_id)
            ).one_or_none()
            if found is None:
                raise NotFoundError(f"no endpoint with id {endpoint_id}")
            endpoint, model_version, model, data_version, dataset = found
            return EndpointLineage(
                endpoint_id=endpoint.id,
                endpoint_url=endpoint.url,
                endpoint_status=endpoint.status,
                backend=endpoint.backend,
                model_name=model.name,
                model_version=model_version.version,
                model_version_id=model_version.id,
                artifact_uri=model_version.artifact_uri,
                dataset_name=None if dataset is None else dataset.name,
                dataset_version=None if data_version is None else data_version.version,
                dataset_version_id=None if data_version is None else data_version.id,
                content_hash=None if data_version is None else data_version.content_hash,
                dataset_uri=None if data_version is None else data_version.uri,
                source_uri=None if data_version is None else data_version.source_uri,
                source_etag=None if data_version is None else data_version.source_etag,
            )

        return self._read(work)

    # Endpoint management used by the deploy-model / undeploy-model flows and `ods models endpoints`.

    def add_served_endpoint(
        self,
        model_version_id: int,
        *,
        backend: EndpointBackend,
        url: str,
        served_model: str | None = None,
        pid: int | None = None,
        log_path: str | None = None,
        details: dict[str, Any] | None = None,
        status: EndpointStatus = "starting",
    ) -> EndpointRecord:
        """Record an endpoint with what it takes to reach and manage its server (process, log, model id)."""
        _check_choice("endpoint backend", backend, EndpointBackend)
        _check_choice("endpoint status", status, EndpointStatus)

        def work(session: Session) -> EndpointRecord:
            _require_rows(session, ModelVersion, ModelVersion.id, [model_version_id], "model version")
            row = Endpoint(
                model_version_id=model_version_id,
                backend=backend,
                url=url,
                status=status,
                served_model=served_model,
                pid=pid,
                log_path=log_path,
                details=details,
            )
            session.add(row)
            session.flush()
            return _endpoint_record(session, row)

        return self._write(work)

    def update_endpoint(
        self,
        endpoint_id: int,
        *,
        status: EndpointStatus | None = None,
        served_model: str | None = None,
        pid: int | None = None,
        log_tail: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EndpointRecord:
        """Change an endpoint's status and/or what is known of its server; ``details`` are merged in."""
        if status is not None:
            _check_choice("endpoint status", status, EndpointStatus)

        def work(session: Session) -> EndpointRecord:
            row = session.get(Endpoint, endpoint_id)
            if row is None:
                raise NotFoundError(f"no endpoint with id {endpoint_id}")
            if status is not None:
                row.status = status
            if served_model is not None:
                row.served_model = served_model
            if pid is not None:
                row.pid = pid
            if log_tail is not None:
                row.log_tail = log_tail
            if details:
                row.details = {**(row.details or {}), **details}
            row.updated_at = utcnow()
            session.flush()
            return _endpoint_record(session, row)

        return self._write(work)

    def get_endpoint(self, endpoint_id: int) -> EndpointRecord:
        """One endpoint by id."""

        def work(session: Session) -> EndpointRecord:
            row = session.get(Endpoint, endpoint_id)
            if row is None:
                raise NotFoundError(f"no endpoint with id {endpoint_id}")
            return _endpoint_record(session, row)

        return self._read(work)

    def list_endpoints(
        self,
        model_name: str | None = None,
        *,
        model_version: int | None = None,
        status: EndpointStatus | None = None,
    ) -> list[EndpointRecord]:
        """Endpoints, newest first, optionally of one model (and version) and/or in one status."""

        def work(session: Session) -> list[EndpointRecord]:
            query = (
                select(Endpoint)
                .join(ModelVersion, Endpoint.model_version_id == ModelVersion.id)
                .join(Model, ModelVersion.model_id == Model.id)
            )
            if model_name is not None:
                query = query.where(Model.name == model_name)
            if model_version is not None:
                query = query.where(ModelVersion.version == model_version)
            if status is not None:
                query = query.where(Endpoint.status == status)
            rows = session.scalars(query.order_by(Endpoint.updated_at.desc(), Endpoint.id.desc())).all()
            return [_endpoint_record(session, row) for row in rows]

        return self._read(work)

    # Model listing and lookups used by the train-model flow and `ods models` (training helper).

    def find_model_version(self, name: str, *, artifact_uri: str) -> ModelVersionRecord | None:
        """The version of model ``name`` stored at ``artifact_uri``, if one is registered there.

        Artifact folders are named by the training request, so this finds an earlier run of the same request.
        """

        def work(session: Session) -> ModelVersionRecord | None:
            row = session.scalar(
                select(ModelVersion)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(Model.name == name, ModelVersion.artifact_uri == artifact_uri)
                .order_by(ModelVersion.version)
                .limit(1)
            )
            return None if row is None else _model_version_record(row, name)

        return self._read(work)

    def list_models(self) -> list[ModelRecord]:
        """Every model, by name."""

        def work(session: Session) -> list[ModelRecord]:
            return [_model_record(row) for row in session.scalars(select(Model).order_by(Model.name))]

        return self._read(work)

    def list_model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Every version of model ``name`` (of every model when ``None``), by model name then version."""

        def work(session: Session) -> list[ModelVersionRecord]:
            query = select(ModelVersion, Model.name).join(Model, ModelVersion.model_id == Model.id)
            if name is not None:
                if session.scalar(select(Model.id).where(Model.name == name)) is None:
                    raise NotFoundError(_missing_name_message(session, "model", name, Model.name))
                query = query.where(Model.name == name)
            rows = session.execute(query.order_by(Model.name, ModelVersion.version)).all()
            return [_model_version_record(row, model_name) for row, model_name in rows]

        return self._read(work)

    def training_dataset(self, model_version_id: int) -> DatasetVersionRecord | None:
        """The dataset version a model version was trained on (``None`` when it records none)."""

        def work(session: Session) -> DatasetVersionRecord | None:
            found = session.execute(
                select(DatasetVersion, Dataset.name)
                .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .join(ModelVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
                .where(ModelVersion.id == model_version_id)
                .options(selectinload(DatasetVersion.parents))
            ).one_or_none()
            return None if found is None else _dataset_version_record(found[0], found[1])

        return self._read(work)

    # -- knowledge bases and documents ---------------------------------------------------------------

    def ensure_knowledge_base(
        self,
        name: str,
        *,
        embedding_model: str,
        embedding_dim: int,
        collection_name: str,
        source_uri: str | None = None,
    ) -> KnowledgeBaseRecord:
        """The knowledge base ``name``, created if missing; a given ``source_uri`` replaces the stored one.

        An existing knowledge base indexed with another embedding model, dimension or collection is an
        error: its vectors would not match the new model.
        """
        _check_name("knowledge base", name)

        def work(session: Session) -> KnowledgeBaseRecord:
            base = session.scalar(select(KnowledgeBase).where(KnowledgeBase.name == name))
            if base is None:
                base = KnowledgeBase(
                    name=name,
                    source_uri=source_uri,
                    embedding_model=embedding_model,
                    embedding_dim=embedding_dim,
                    collection_name=collection_name,
                )
                session.add(base)
                session.flush()
                return _knowledge_base_record(base)
            stored = (base.embedding_model, base.embedding_dim, base.collection_name)
            if stored != (embedding_model, embedding_dim, collection_name):
                raise CatalogError(
                    f"knowledge base {name!r} is indexed with {base.embedding_model} ({base.embedding_dim} dims) "
                    f"in collection {base.collection_name!r}, not {embedding_model} ({embedding_dim} dims) in "
                    f"{collection_name!r}; use the same embedding model or a new knowledge base name"
                )
            if source_uri is not None and base.source_uri != source_uri:
                base.source_uri = source_uri
                session.flush()
            return _knowledge_base_record(base)

        return self._write(work)

    def get_knowledge_base(self, name: str) -> KnowledgeBaseRecord:
        """The knowledge base called ``name``."""
        return self._read(lambda session: _knowledge_base_record(_knowledge_base_named(session, name)))

    def record_document_version(
        self,
        kb: str,
        uri: str,
        sha256: str,
        *,
        etag: str | None,
        status: DocumentStatus,
        reason: str | None = None,
        chunk_count: int = 0,
        parser: str | None = None,
        timings: dict[str, Any] | None = None,
    ) -> DocumentRecord:
        """Record that document ``uri`` of knowledge base ``kb`` now has content ``sha256``.

        Upsert by (document, sha256): the version's etag, status, reason, chunk count, parser and timings
        are replaced, and it becomes the document's current version.
        """
        _check_choice("document status", status, DocumentStatus)

        def work(session: Session) -> DocumentRecord:
            base = _knowledge_base_named(session, kb)
            document, version = _record_document_version(
                session,
                base,
                uri,
                sha256,
                etag=etag,
                status=status,
                reason=reason,
                chunk_count=chunk_count,
                parser=parser,
                timings=timings,
            )
            return _document_record(base.name, document, version)

        return self._write(work)

    def documents(
        self, kb: str, status: DocumentStatus | None = None, *, uris: Sequence[str] | None = None
    ) -> list[DocumentRecord]:
        """The documents of knowledge base ``kb`` (optionally only those in ``status``, or of ``uris``), by URI."""
        if status is not None:
            _check_choice("document status", status, DocumentStatus)
        wanted = None if uris is None else sorted(set(uris))

        def work(session: Session) -> list[DocumentRecord]:
            base = _knowledge_base_named(session, kb)
            query = (
                select(Document, DocumentVersion)
                .outerjoin(DocumentVersion, Document.current_version_id == DocumentVersion.id)
                .where(Document.kb_id == base.id)
                .order_by(Document.uri)
            )
            if status is not None:
                query = query.where(Document.status == status)
            if wanted is None:
                return [_document_record(base.name, doc, version) for doc, version in session.execute(query)]
            records = [
                _document_record(base.name, doc, version)
                for part in _parts(wanted)
                for doc, version in session.execute(query.where(Document.uri.in_(part)))
            ]
            return sorted(records, key=lambda record: record.uri)

        return self._read(work)

    def mark_document_deleted(self, kb: str, uri: str, *, reason: str | None = None) -> DocumentRecord:
        """Mark document ``uri`` (and its current version) deleted, with ``reason`` when given; repeating
        it changes nothing. Called once all its chunks left the index: any older version still recorded
        ``indexed`` becomes ``superseded``."""

        def work(session: Session) -> DocumentRecord:
            base = _knowledge_base_named(session, kb)
            document = session.scalar(select(Document).where(Document.kb_id == base.id, Document.uri == uri))
            if document is None:
                raise NotFoundError(f"knowledge base {kb!r} has no document {uri!r}")
            version = None
            if document.current_version_id is not None:
                version = session.get(DocumentVersion, document.current_version_id)
            document.status = "deleted"
            if version is not None:
                version.status = "deleted"
                if reason is not None:
                    version.reason = reason
            session.flush()
            _supersede_replaced_versions(session, [document.id])
            return _document_record(base.name, document, version)

        return self._write(work)

    def add_chunks(self, document_version_id: int, chunks: Iterable[ChunkRecord]) -> int:
        """Record the chunks of a document version; chunks already recorded are skipped.

        Returns how many chunks were new.
        """
        unique = list({chunk.id: chunk for chunk in chunks}.values())

        def work(session: Session) -> int:
            _require_rows(
                session, DocumentVersion, DocumentVersion.id, [document_version_id], "document version"
            )
            return _add_chunks(session, document_version_id, unique)

        return self._write(work)

    def record_indexed_documents(self, kb: str, documents: Sequence[IndexedDocument]) -> list[DocumentRecord]:
        """Record many indexed document versions, each its document's current one, and their chunks.

        The same as ``record_document_version(status="indexed")`` + ``add_chunks`` per document, in one
        transaction of a few set-wise statements (an ingest batch records hundreds of documents and
        thousands of chunks at a time). Chunks already recorded are skipped.
        """
        latest = {item.uri: item for item in documents}  # a URI listed twice: its last version wins

        def work(session: Session) -> list[DocumentRecord]:
            base = _knowledge_base_named(session, kb)
            uris = sorted(latest)
            existing = {
                document.uri: document
                for part in _parts(uris)
                for document in session.scalars(
                    select(Document).where(Document.kb_id == base.id, Document.uri.in_(part))
                )
            }
            for uri in uris:
                if uri not in existing:
                    existing[uri] = Document(kb_id=base.id, uri=uri, status="indexed")
                    session.add(existing[uri])
            session.flush()
            wanted = {(existing[uri].id, latest[uri].sha256): uri for uri in uris}
            versions: dict[str, DocumentVersion] = {
                wanted[(version.document_id, version.sha256)]: version
                for part in _parts([existing[uri].id for uri in uris])
                for version in session.scalars(
                    select(DocumentVersion).where(DocumentVersion.document_id.in_(part))
                )
                if (version.document_id, version.sha256) in wanted
            }
            for uri in uris:
                item = latest[uri]
                version = versions.get(uri)
                if version is None:
                    version = versions[uri] = DocumentVersion(
                        document_id=existing[uri].id, sha256=item.sha256
                    )
                    session.add(version)
                version.etag, version.status, version.reason = item.etag, "indexed", None
                version.chunk_count, version.parser, version.timings = len(item.chunks), item.parser, None
            session.flush()
            for uri in uris:
                existing[uri].status = "indexed"
                existing[uri].current_version_id = versions[uri].id
            session.flush()
            # The ingest deleted the other versions' chunks from the index just before (``index_batch``:
            # upsert, delete other versions, record): they are superseded in this same transaction.
            _supersede_replaced_versions(session, [existing[uri].id for uri in uris])
            version_ids = [versions[uri].id for uri in uris]
            known = {
                chunk_id
                for part in _parts(version_ids)
                for chunk_id in session.scalars(select(Chunk.id).where(Chunk.document_version_id.in_(part)))
            }
            new_chunks = {
                chunk.id: {
                    "id": chunk.id,
                    "document_version_id": versions[uri].id,
                    "chunk_index": chunk.chunk_index,
                    "page": chunk.page,
                    "heading": chunk.heading,
                    "char_count": chunk.char_count,
                }
                for uri in uris
                for chunk in latest[uri].chunks
                if chunk.id not in known
            }
            if new_chunks:
                session.execute(insert(Chunk), list(new_chunks.values()))
            session.flush()
            return [_document_record(base.name, existing[uri], versions[uri]) for uri in uris]

        return self._write(work)

    def replaced_versions(self, kb: str) -> list[ReplacedVersion]:
        """The versions of ``kb`` still ``indexed`` that are not their document's current version.

        Their chunks may still be in the index: an ingest deletes them and then marks the versions
        superseded (``ods.ingestion.retire_replaced_versions``).
        """

        def work(session: Session) -> list[ReplacedVersion]:
            base = _knowledge_base_named(session, kb)
            current = aliased(DocumentVersion)
            rows = session.execute(
                select(
                    DocumentVersion.id, Document.uri, DocumentVersion.sha256, current.sha256, current.status
                )
                .join(Document, DocumentVersion.document_id == Document.id)
                .outerjoin(current, Document.current_version_id == current.id)
                .where(
                    Document.kb_id == base.id,
                    DocumentVersion.status == "indexed",
                    or_(
                        Document.current_version_id.is_(None),
                        Document.current_version_id != DocumentVersion.id,
                    ),
                )
                .order_by(Document.uri, DocumentVersion.id)
            ).all()
            return [
                ReplacedVersion(version_id, uri, sha256, current_sha256, current_status or "none")
                for version_id, uri, sha256, current_sha256, current_status in rows
            ]

        return self._read(work)

    def mark_versions_superseded(self, version_ids: Sequence[int]) -> int:
        """Mark these versions superseded (their chunks are gone from the index); only versions still
        ``indexed`` and not their document's current one change. Returns how many did."""
        wanted = sorted(set(version_ids))

        def work(session: Session) -> int:
            changed = 0
            for part in _parts(wanted):
                current_ids = select(Document.current_version_id).where(
                    Document.current_version_id.is_not(None)
                )
                result = session.execute(
                    update(DocumentVersion)
                    .where(
                        DocumentVersion.id.in_(part),
                        DocumentVersion.status == "indexed",
                        DocumentVersion.id.not_in(current_ids),
                    )
                    .values(status="superseded", updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                changed += result.rowcount or 0  # type: ignore[attr-defined]
            return changed

        return self._write(work)

    def knowledge_base_counts(self, kb: str) -> KnowledgeBaseCounts:
        """Documents and versions of ``kb`` by status, and the chunk rows of its ``indexed`` versions."""

        def work(session: Session) -> KnowledgeBaseCounts:
            base = _knowledge_base_named(session, kb)
            documents = session.execute(
                select(Document.status, func.count())
                .where(Document.kb_id == base.id)
                .group_by(Document.status)
            ).all()
            versions = session.execute(
                select(DocumentVersion.status, func.count())
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Document.kb_id == base.id)
                .group_by(DocumentVersion.status)
            ).all()
            chunks = session.scalar(
                select(func.count())
                .select_from(Chunk)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Document.kb_id == base.id, DocumentVersion.status == "indexed")
            )
            return KnowledgeBaseCounts(
                documents={status: count for status, count in documents},
                versions={status: count for status, count in versions},
                indexed_chunks=int(chunks or 0),
            )

        return self._read(work)

    def indexed_chunk_ids(self, kb: str) -> dict[str, str]:
        """Chunk id → document URI for every chunk of ``kb``'s ``indexed`` versions: what its collection
        should hold, exactly (``ods kb verify`` compares the two)."""

        def work(session: Session) -> dict[str, str]:
            base = _knowledge_base_named(session, kb)
            uris: dict[str, str] = {}  # one string per URI, however many chunks share it
            rows = session.execute(
                select(Chunk.id, Document.uri)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Document.kb_id == base.id, DocumentVersion.status == "indexed")
                .execution_options(yield_per=10_000)
            )
            return {chunk_id: uris.setdefault(uri, uri) for chunk_id, uri in rows}

        return self._read(work)

    def chunk_sources(self, chunk_ids: Iterable[str]) -> dict[str, ChunkSource]:
        """Where each known chunk comes from (document URI, version, page, heading); unknown ids are absent.

        Answers cite chunks by id; this turns a citation back into something a person can open.
        """
        wanted = sorted(set(chunk_ids))

        def work(session: Session) -> dict[str, ChunkSource]:
            if not wanted:
                return {}
            rows = session.execute(
                select(Chunk, DocumentVersion.sha256, Document.uri)
                .join(DocumentVersion, Chunk.document_version_id == DocumentVersion.id)
                .join(Document, DocumentVersion.document_id == Document.id)
                .where(Chunk.id.in_(wanted))
            ).all()
            return {
                chunk.id: ChunkSource(
                    chunk_id=chunk.id,
                    document_version_id=chunk.document_version_id,
                    doc_uri=uri,
                    doc_sha256=sha256,
                    chunk_index=chunk.chunk_index,
                    page=chunk.page,
                    heading=chunk.heading,
                )
                for chunk, sha256, uri in rows
            }

        return self._read(work)

    # -- conversations -------------------------------------------------------------------------------

    def create_conversation(self, title: str) -> ConversationRecord:
        """Start a conversation; its id is a fresh uuid4 hex string."""

        def work(session: Session) -> ConversationRecord:
            row = Conversation(id=uuid.uuid4().hex, title=title)
            session.add(row)
            session.flush()
            return _conversation_record(row)

        return self._write(work)

    def add_message(
        self,
        conversation_id: str,
        role: MessageRole,
        content: str,
        *,
        sql: str | None = None,
        model: str | None = None,
        usage: dict[str, Any] | None = None,
        citations: Sequence[CitationRecord] = (),
    ) -> MessageRecord:
        """Append a message (with the sources it cites) to a conversation."""
        _check_choice("message role", role, MessageRole)

        def work(session: Session) -> MessageRecord:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFoundError(f"no conversation with id {conversation_id!r}")
            _require_citation_targets(session, citations)
            message = Message(
                conversation_id=conversation_id,
                role=role,
                content=content,
                sql=sql,
                model=model,
                usage=usage,
                citations=[
                    Citation(
                        marker=citation.marker,
                        chunk_id=citation.chunk_id,
                        document_version_id=citation.document_version_id,
                        dataset_version_id=citation.dataset_version_id,
                    )
                    for citation in citations
                ],
            )
            session.add(message)
            conversation.updated_at = utcnow()
            session.flush()
            return _message_record(message)

        return self._write(work)

    def get_conversation(self, conversation_id: str) -> ConversationRecord:
        """A conversation with its messages (oldest first) and their citations."""

        def work(session: Session) -> ConversationRecord:
            row = session.scalar(
                select(Conversation)
                .where(Conversation.id == conversation_id)
                .options(selectinload(Conversation.messages).selectinload(Message.citations))
            )
            if row is None:
                raise NotFoundError(f"no conversation with id {conversation_id!r}")
            return _conversation_record(row, with_messages=True)

        return self._read(work)

    def list_conversations(self) -> list[ConversationRecord]:
        """Every conversation, most recently active first, without messages."""

        def work(session: Session) -> list[ConversationRecord]:
            rows = session.scalars(
                select(Conversation).order_by(Conversation.updated_at.desc(), Conversation.id)
            ).all()
            return [_conversation_record(row) for row in rows]

        return self._read(work)

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete a conversation; the database cascades to its messages and citations."""

        def work(session: Session) -> None:
            if session.get(Conversation, conversation_id) is None:
                raise NotFoundError(f"no conversation with id {conversation_id!r}")
            session.execute(delete(Conversation).where(Conversation.id == conversation_id))

        self._write(work)

    # -- knowledge base listing and watched objects (migration 0003) ---------------------------------

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

    def list_knowledge_bases(self) -> list[KnowledgeBaseRecord]:
        """Every knowledge base, by name."""

        def work(session: Session) -> list[KnowledgeBaseRecord]:
            rows = session.scalars(select(KnowledgeBase).order_by(KnowledgeBase.name))
            return [_knowledge_base_record(row) for row in rows]

        return self._read(work)

    def watched_objects(self, bucket: str, prefix: str = "") -> list[WatchedObjectRecord]:
        """The objects the watcher recorded in ``bucket`` under ``prefix`` (deleted ones included), by key."""

        def work(session: Session) -> list[WatchedObjectRecord]:
            query = select(WatchedObject).where(WatchedObject.bucket == bucket).order_by(WatchedObject.key)
            if prefix:
                query = query.where(WatchedObject.key.startswith(prefix, autoescape=True))
            return [_watched_object_record(row) for row in session.scalars(query)]

        return self._read(work)

    def record_watched_objects(self, bucket: str, states: Iterable[WatchedObjectState]) -> int:
        """Upsert what the watcher saw, by (bucket, key), in one transaction; returns the rows written.

        A concurrent watcher inserting the same key makes this transaction retry and update instead, so an
        object is never recorded twice. Recording a deletion of a key never seen is a no-op.
        """
        wanted = list(states)

        def work(session: Session) -> int:
            now = utcnow()
            written = 0
            for state in wanted:
                row = session.scalar(
                    select(WatchedObject).where(
                        WatchedObject.bucket == bucket, WatchedObject.key == state.key
                    )
                )
                if row is None:
                    if state.deleted:
                        continue
                    row = WatchedObject(bucket=bucket, key=state.key, first_seen=now)
                    session.add(row)
                row.etag = state.etag
                row.sha256 = state.sha256
                row.size = state.size
                row.last_seen = now
                row.deleted_at = now if state.deleted else None
                written += 1
            session.flush()
            return written

        return self._write(work)

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


def _record_document_version(
    session: Session,
    base: KnowledgeBase,
    uri: str,
    sha256: str,
    *,
    etag: str | None,
    status: str,
    reason: str | None = None,
    chunk_count: int = 0,
    parser: str | None = None,
    timings: dict[str, Any] | None = None,
) -> tuple[Document, DocumentVersion]:
    """Upsert version (uri, sha256) of a document of ``base`` and make it the document's current one."""
    document = session.scalar(select(Document).where(Document.kb_id == base.id, Document.uri == uri))
    if document is None:
        document = Document(kb_id=base.id, uri=uri, status=status)
        session.add(document)
        session.flush()
    version = session.scalar(
        select(DocumentVersion).where(
            DocumentVersion.document_id == document.id, DocumentVersion.sha256 == sha256
        )
    )
    if version is None:
        version = DocumentVersion(document_id=document.id, sha256=sha256)
        session.add(version)
    version.etag = etag
    version.status = status
    version.reason = reason
    version.chunk_count = chunk_count
    version.parser = parser
    version.timings = timings
    session.flush()
    document.status = status
    document.current_version_id = version.id
    session.flush()
    return document, version


def _supersede_replaced_versions(session: Session, document_ids: Sequence[int]) -> None:
    """Mark superseded every ``indexed`` version of these documents other than their current one.

    Called once the index no longer holds those versions' chunks; their chunk rows stay, so answers that
    cited them still resolve.
    """
    for part in _parts(sorted(set(document_ids))):
        session.execute(
            update(DocumentVersion)
            .where(
                DocumentVersion.document_id.in_(part),
                DocumentVersion.status == "indexed",
                DocumentVersion.id
                != select(Document.current_version_id)
                .where(Document.id == DocumentVersion.document_id)
                .scalar_subquery(),
            )
            .values(status="superseded", updated_at=utcnow())
            # Versions loaded in this session keep their old status in memory; none is written again.
            .execution_options(synchronize_session=False)
        )


def _add_chunks(session: Session, document_version_id: int, chunks: Sequence[ChunkRecord]) -> int:
    """Add the chunks of a version not recorded yet (``chunks`` unique by id); how many were new."""
    known = set(session.scalars(select(Chunk.id).where(Chunk.document_version_id == document_version_id)))
    new = [chunk for chunk in chunks if chunk.id not in known]
    session.add_all(
        Chunk(
            id=chunk.id,
            document_version_id=document_version_id,
            chunk_index=chunk.chunk_index,
            page=chunk.page,
            heading=chunk.heading,
            char_count=chunk.char_count,
        )
        for chunk in new
    )
    session.flush()
    return len(new)


def _parts(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices short enough for one IN (...) list."""
    for start in range(0, len(values), _IN_CLAUSE_VALUES):
        yield values[start : start + _IN_CLAUSE_VALUES]


def _is_unique_violation(error: IntegrityError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(error.orig)


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__


def _check_name(kind: NameKind, name: str) -> None:
    """The last line behind the entry points' checks: no row is created under a name that breaks the
    rule of :mod:`ods.domain.names` (InvalidNameError, naming the rule)."""
    check_name(kind, name)


def _check_choice(what: str, value: str, choices: Any) -> None:
    """Statuses and roles come from code typed with a ``Literal``; a wrong one is a programming error."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


def _require_rows(
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


def _require_citation_targets(session: Session, citations: Sequence[CitationRecord]) -> None:
    chunk_ids = sorted({c.chunk_id for c in citations if c.chunk_id is not None})
    if chunk_ids:
        found = set(session.scalars(select(Chunk.id).where(Chunk.id.in_(chunk_ids))))
        missing = [chunk_id for chunk_id in chunk_ids if chunk_id not in found]
        if missing:
            raise NotFoundError(f"citation names unknown chunk {', '.join(missing)}")
    document_version_ids = sorted({c.document_version_id for c in citations if c.document_version_id})
    _require_rows(session, DocumentVersion, DocumentVersion.id, document_version_ids, "document version")
    dataset_version_ids = sorted({c.dataset_version_id for c in citations if c.dataset_version_id})
    _require_rows(session, DatasetVersion, DatasetVersion.id, dataset_version_ids, "dataset version")


def _get_or_create_dataset(session: Session, name: str, description: str | None) -> Dataset:
    """The dataset row, locked until commit so concurrent writers number its versions one at a time."""
    dataset = session.scalar(select(Dataset).where(Dataset.name == name).with_for_update())
    if dataset is None:
        dataset = Dataset(name=name, description=description)
        session.add(dataset)
        session.flush()
    elif description is not None and dataset.description != description:
        dataset.description = description
        session.flush()
    return dataset


def _get_or_create_model(session: Session, name: str, description: str | None) -> Model:
    """The model row, locked until commit so concurrent writers number its versions one at a time."""
    model = session.scalar(select(Model).where(Model.name == name).with_for_update())
    if model is None:
        model = Model(name=name, description=description)
        session.add(model)
        session.flush()
    elif description is not None and model.description != description:
        model.description = description
        session.flush()
    return model


def _dataset_named(session: Session, name: str) -> Dataset:
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFoundError(_missing_name_message(session, "dataset", name, Dataset.name))
    return dataset


def _knowledge_base_named(session: Session, name: str) -> KnowledgeBase:
    base = session.scalar(select(KnowledgeBase).where(KnowledgeBase.name == name))
    if base is None:
        raise NotFoundError(_missing_name_message(session, "knowledge base", name, KnowledgeBase.name))
    return base


def _missing_name_message(session: Session, kind: str, name: str, column: InstrumentedAttribute[str]) -> str:
    names = list(session.scalars(select(column).order_by(column).limit(_LISTED_NAMES + 1)))
    asked = f"no {kind} named {name!r}"
    if not is_valid_name(name):
        asked += f" (not a valid name: {NAME_RULE})"
    if not names:
        return f"{asked}; the catalog holds no {kind}s yet"
    shown = ", ".join(map(display_name, names[:_LISTED_NAMES])) + (
        ", ..." if len(names) > _LISTED_NAMES else ""
    )
    return f"{asked}; known {kind}s: {shown}"


def _validation_run_record(row: ValidationRun) -> ValidationRunRecord:
    return ValidationRunRecord(
        id=row.id,
        dataset_version_id=row.dataset_version_id,
        success=row.success,
        results=row.results,
        quarantine_uri=row.quarantine_uri,
        created_at=row.created_at,
    )


def _missing_version_message(
    kind: str, name: str, version: int | None, versions: Sequence[tuple[int, str]]
) -> str:
    existing = ", ".join(f"{number} ({status})" for number, status in versions) or "none"
    if version is None:
        return f"{kind} {name!r} has no registered version; versions: {existing}"
    return f"{kind} {name!r} has no version {version}; versions: {existing}"


def _dataset_record(session: Session, dataset: Dataset) -> DatasetRecord:
    latest, count = session.execute(
        select(
            func.max(DatasetVersion.version).filter(DatasetVersion.status == "registered"),
            func.count(DatasetVersion.id),
        ).where(DatasetVersion.dataset_id == dataset.id)
    ).one()
    return DatasetRecord(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        created_at=dataset.created_at,
        latest_version=latest,
        version_count=count,
    )


def _dataset_version_record(row: DatasetVersion, dataset_name: str) -> DatasetVersionRecord:
    return DatasetVersionRecord(
        id=row.id,
        dataset_id=row.dataset_id,
        dataset_name=dataset_name,
        version=row.version,
        content_hash=row.content_hash,
        uri=row.uri,
        schema=row.schema,
        profile=row.profile,
        row_count=row.row_count,
        size_bytes=row.size_bytes,
        status=row.status,
        reason=row.reason,
        source_uri=row.source_uri,
        source_etag=row.source_etag,
        source_sha256=row.source_sha256,
        spec_hash=row.spec_hash,
        flow_run_id=row.flow_run_id,
        parent_ids=tuple(sorted(parent.id for parent in row.parents)),
        created_at=row.created_at,
    )


def _model_record(row: Model) -> ModelRecord:
    return ModelRecord(id=row.id, name=row.name, description=row.description, created_at=row.created_at)


def _model_version_record(row: ModelVersion, model_name: str) -> ModelVersionRecord:
    return ModelVersionRecord(
        id=row.id,
        model_id=row.model_id,
        model_name=model_name,
        version=row.version,
        trainer=row.trainer,
        params=row.params,
        metrics=row.metrics,
        artifact_uri=row.artifact_uri,
        dataset_version_id=row.dataset_version_id,
        code_version=row.code_version,
        flow_run_id=row.flow_run_id,
        status=row.status,
        created_at=row.created_at,
    )


def _endpoint_record(session: Session, row: Endpoint) -> EndpointRecord:
    model_name, model_version = session.execute(
        select(Model.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.model_id == Model.id)
        .where(ModelVersion.id == row.model_version_id)
    ).one()
    return EndpointRecord(
        id=row.id,
        model_version_id=row.model_version_id,
        model_name=model_name,
        model_version=model_version,
        backend=row.backend,
        url=row.url,
        status=row.status,
        log_tail=row.log_tail,
        created_at=row.created_at,
        updated_at=row.updated_at,
        served_model=row.served_model,
        pid=row.pid,
        log_path=row.log_path,
        details=dict(row.details or {}),
    )


def _watched_object_record(row: WatchedObject) -> WatchedObjectRecord:
    return WatchedObjectRecord(
        bucket=row.bucket,
        key=row.key,
        etag=row.etag,
        sha256=row.sha256,
        size=row.size,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        deleted=row.deleted_at is not None,
    )


def _knowledge_base_record(row: KnowledgeBase) -> KnowledgeBaseRecord:
    return KnowledgeBaseRecord(
        id=row.id,
        name=row.name,
        source_uri=row.source_uri,
        embedding_model=row.embedding_model,
        embedding_dim=row.embedding_dim,
        collection_name=row.collection_name,
        created_at=row.created_at,
    )


def _document_record(kb_name: str, document: Document, version: DocumentVersion | None) -> DocumentRecord:
    return DocumentRecord(
        id=document.id,
        kb_name=kb_name,
        uri=document.uri,
        status=document.status,
        version_id=None if version is None else version.id,
        sha256=None if version is None else version.sha256,
        etag=None if version is None else version.etag,
        reason=None if version is None else version.reason,
        chunk_count=0 if version is None else version.chunk_count,
        parser=None if version is None else version.parser,
        timings=None if version is None else version.timings,
        created_at=document.created_at,
        updated_at=document.updated_at,
    )


def _message_record(row: Message) -> MessageRecord:
    return MessageRecord(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        sql=row.sql,
        model=row.model,
        usage=row.usage,
        created_at=row.created_at,
        citations=tuple(
            CitationRecord(
                marker=citation.marker,
                chunk_id=citation.chunk_id,
                document_version_id=citation.document_version_id,
                dataset_version_id=citation.dataset_version_id,
            )
            for citation in row.citations
        ),
    )


def _conversation_record(row: Conversation, *, with_messages: bool = False) -> ConversationRecord:
    return ConversationRecord(
        id=row.id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        messages=tuple(_message_record(message) for message in row.messages) if with_messages else (),
    )
