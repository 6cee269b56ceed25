"""Models and their trained versions, each tied to the dataset version it learnt from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, selectinload

from ods.adapters.catalog.base import CatalogBase, VersionedTable, check_choice, require_rows, to_record
from ods.adapters.catalog.datasets import dataset_version_record
from ods.adapters.catalog.records import DatasetVersionRecord, ModelRecord, ModelVersionRecord
from ods.adapters.catalog.schema import Dataset, DatasetVersion, Endpoint, Model, ModelStatus, ModelVersion
from ods.domain.names import check_name
from ods.errors import OdsError

LIVE_ENDPOINT_STATUSES = ("starting", "active")


class ModelServingError(OdsError):
    """A model with a starting or active endpoint cannot be deleted; the message names its URLs."""


class ModelTables(CatalogBase):
    """``models`` and ``model_versions``."""

    def ensure_model(
        self, name: str, description: str | None = None, *, owner: str | None = None
    ) -> ModelRecord:
        """The model called ``name``, created if missing (owned by ``owner``); a given description
        replaces the stored one."""
        return self._ensure(MODELS, name, description, owner=owner)

    def get_model_version(self, name: str, version: int | None = None) -> ModelVersionRecord:
        """Version ``version`` of model ``name``, or its newest registered version when ``None``."""
        return self._read(lambda session: MODELS.get_version(session, name, self.tenant, version))

    def find_model_version(self, name: str, *, artifact_uri: str) -> ModelVersionRecord | None:
        """The version of model ``name`` stored at ``artifact_uri``, if one is registered there.

        Artifact folders are named by the training request, so this finds an earlier run of the same request.
        """

        def work(session: Session) -> ModelVersionRecord | None:
            row = session.scalar(
                select(ModelVersion)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(
                    Model.name == name, Model.tenant == self.tenant, ModelVersion.artifact_uri == artifact_uri
                )
                .order_by(ModelVersion.version)
                .limit(1)
            )
            return None if row is None else _model_version_record(row, name)

        return self._read(work)

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
        check_name("model", model_name)
        check_choice("model status", status, ModelStatus)

        def work(session: Session) -> ModelVersionRecord:
            model = MODELS.lock_owner(session, model_name, None, self.tenant, self.creator)
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
                require_rows(
                    session, DatasetVersion, DatasetVersion.id, [dataset_version_id], "dataset version"
                )
            row = MODELS.add_version(
                session,
                model,
                trainer=trainer,
                params=params,
                metrics=metrics,
                artifact_uri=artifact_uri,
                dataset_version_id=dataset_version_id,
                code_version=code_version,
                flow_run_id=flow_run_id,
                status=status,
            )
            return _model_version_record(row, model.name)

        return self._write(work)

    def delete_model(self, name: str) -> ModelRecord:
        """Remove model ``name``, its versions and the records of its stopped or failed endpoints (the
        artifacts stay in the object store); returns what was removed. A model with a starting or active
        endpoint is refused (ModelServingError): undeploy it first."""

        def work(session: Session) -> ModelRecord:
            model = MODELS.named(session, name, self.tenant)
            version_ids = select(ModelVersion.id).where(ModelVersion.model_id == model.id)
            live = session.scalars(
                select(Endpoint.url).where(
                    Endpoint.model_version_id.in_(version_ids), Endpoint.status.in_(LIVE_ENDPOINT_STATUSES)
                )
            ).all()
            if live:
                raise ModelServingError(
                    f"model {name!r} is still served at {', '.join(live)}; undeploy it first"
                )
            record = _model_record(session, model)
            session.execute(delete(Endpoint).where(Endpoint.model_version_id.in_(version_ids)))
            session.execute(delete(ModelVersion).where(ModelVersion.model_id == model.id))
            session.delete(model)
            return record

        return self._write(work)

    def list_models(self) -> list[ModelRecord]:
        """Every model, by name."""
        return self._list_named(Model, _model_record)

    def list_model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Every version of model ``name`` (of every model when ``None``), by model name then version."""

        def work(session: Session) -> list[ModelVersionRecord]:
            query = select(ModelVersion, Model.name).join(Model, ModelVersion.model_id == Model.id)
            if name is not None:
                MODELS.named(session, name, self.tenant)
                query = query.where(Model.name == name, Model.tenant == self.tenant)
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
            return None if found is None else dataset_version_record(found[0], found[1])

        return self._read(work)


def _model_version_record(row: ModelVersion, model_name: str) -> ModelVersionRecord:
    return to_record(ModelVersionRecord, row, model_name=model_name)


def _model_record(_session: Session, row: Model) -> ModelRecord:
    return to_record(ModelRecord, row)


MODELS = VersionedTable(
    "model", Model, ModelVersion, ModelVersion.model_id, _model_record, _model_version_record
)
