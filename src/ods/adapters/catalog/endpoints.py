"""Endpoints: served model versions, what it takes to reach and manage their servers, and their lineage.

Used by the deploy-model / undeploy-model flows, `ods models endpoints` and the LLM resolution of
``ODS_LLM__KIND=openai`` (the model's active endpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import (
    CatalogBase,
    add_row,
    check_choice,
    not_found,
    require_row,
    require_rows,
    to_record,
)
from ods.adapters.catalog.records import EndpointLineage, EndpointRecord
from ods.adapters.catalog.schema import (
    Dataset,
    DatasetVersion,
    Endpoint,
    EndpointBackend,
    EndpointStatus,
    Model,
    ModelVersion,
    utcnow,
)


class EndpointTables(CatalogBase):
    """``endpoints``, joined to ``model_versions`` and ``models`` for their names."""

    def add_endpoint(
        self,
        model_version_id: int,
        *,
        backend: EndpointBackend,
        url: str,
        status: EndpointStatus = "starting",
    ) -> EndpointRecord:
        """Record an endpoint serving a model version."""
        return self.add_served_endpoint(model_version_id, backend=backend, url=url, status=status)

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
        check_choice("endpoint backend", backend, EndpointBackend)
        check_choice("endpoint status", status, EndpointStatus)

        def work(session: Session) -> EndpointRecord:
            require_rows(session, ModelVersion, ModelVersion.id, [model_version_id], "model version")
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
            return _endpoint_record(session, add_row(session, row))

        return self._write(work)

    def set_endpoint_status(
        self, endpoint_id: int, status: EndpointStatus, *, log_tail: str | None = None, url: str | None = None
    ) -> EndpointRecord:
        """Move an endpoint to ``status``; a given ``log_tail`` or ``url`` replaces the stored one."""
        check_choice("endpoint status", status, EndpointStatus)

        def change(row: Endpoint) -> None:
            row.status = status
            if log_tail is not None:
                row.log_tail = log_tail
            if url is not None:
                row.url = url

        return self._change_endpoint(endpoint_id, change)

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
            check_choice("endpoint status", status, EndpointStatus)

        def change(row: Endpoint) -> None:
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

        return self._change_endpoint(endpoint_id, change)

    def get_endpoint(self, endpoint_id: int) -> EndpointRecord:
        """One endpoint by id."""
        return self._read(lambda session: _endpoint_record(session, _endpoint(session, endpoint_id)))

    def active_endpoint(self, model_name: str) -> EndpointRecord | None:
        """The most recently activated endpoint serving any version of ``model_name``, if one is active."""
        found = self._find_endpoints(model_name, None, "active", limit=1)
        return found[0] if found else None

    def list_endpoints(
        self,
        model_name: str | None = None,
        *,
        model_version: int | None = None,
        status: EndpointStatus | None = None,
    ) -> list[EndpointRecord]:
        """Endpoints, newest first, optionally of one model (and version) and/or in one status."""
        return self._find_endpoints(model_name, model_version, status)

    def _find_endpoints(
        self,
        model_name: str | None,
        model_version: int | None,
        status: EndpointStatus | None,
        *,
        limit: int | None = None,
    ) -> list[EndpointRecord]:
        def work(session: Session) -> list[EndpointRecord]:
            query = (
                select(Endpoint)
                .join(ModelVersion, Endpoint.model_version_id == ModelVersion.id)
                .join(Model, ModelVersion.model_id == Model.id)
            )
            if model_name is not None:
                query = query.where(Model.name == model_name, Model.tenant == self.tenant)
            if model_version is not None:
                query = query.where(ModelVersion.version == model_version)
            if status is not None:
                query = query.where(Endpoint.status == status)
            query = query.order_by(Endpoint.updated_at.desc(), Endpoint.id.desc()).limit(limit)
            return [_endpoint_record(session, row) for row in session.scalars(query)]

        return self._read(work)

    def lineage_of_endpoint(self, endpoint_id: int) -> EndpointLineage:
        """Endpoint → model version → dataset version → source URI and ETag, in one query."""

        def work(session: Session) -> EndpointLineage:
            # Labelled as EndpointLineage's fields; the outer joins leave the dataset columns NULL (None)
            # for a model version that records no dataset version.
            found = session.execute(
                select(
                    Endpoint.id.label("endpoint_id"),
                    Endpoint.url.label("endpoint_url"),
                    Endpoint.status.label("endpoint_status"),
                    Endpoint.backend,
                    Model.name.label("model_name"),
                    ModelVersion.version.label("model_version"),
                    ModelVersion.id.label("model_version_id"),
                    ModelVersion.artifact_uri,
                    Dataset.name.label("dataset_name"),
                    DatasetVersion.version.label("dataset_version"),
                    DatasetVersion.id.label("dataset_version_id"),
                    DatasetVersion.content_hash,
                    DatasetVersion.uri.label("dataset_uri"),
                    DatasetVersion.source_uri,
                    DatasetVersion.source_etag,
                )
                .join(ModelVersion, Endpoint.model_version_id == ModelVersion.id)
                .join(Model, ModelVersion.model_id == Model.id)
                .outerjoin(DatasetVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
                .outerjoin(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .where(Endpoint.id == endpoint_id)
            ).one_or_none()
            if found is None:
                raise not_found("endpoint", endpoint_id)
            return EndpointLineage(**found._mapping)

        return self._read(work)

    def _change_endpoint(self, endpoint_id: int, change: Callable[[Endpoint], None]) -> EndpointRecord:
        def work(session: Session) -> EndpointRecord:
            row = _endpoint(session, endpoint_id)
            change(row)
            session.flush()
            return _endpoint_record(session, row)

        return self._write(work)


def _endpoint(session: Session, endpoint_id: int) -> Endpoint:
    return require_row(session, Endpoint, endpoint_id, "endpoint")


def _endpoint_record(session: Session, row: Endpoint) -> EndpointRecord:
    model_name, model_version = session.execute(
        select(Model.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.model_id == Model.id)
        .where(ModelVersion.id == row.model_version_id)
    ).one()
    details = dict(row.details or {})
    return to_record(EndpointRecord, row, model_name=model_name, model_version=model_version, details=details)
