"""``/api/v1/models``: trained models, their versions with metrics and lineage, and their endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ods.adapters.catalog.records import EndpointRecord, ModelVersionRecord
from ods.api.deps import ServerResources, checked
from ods.api.envelope import Envelope, ok

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelSummary(BaseModel):
    name: str
    description: str | None
    latest_version: int | None
    version_count: int
    created_at: datetime


class TrainingData(BaseModel):
    dataset: str
    version: int
    dataset_version_id: int
    content_hash: str


class ModelVersion(BaseModel):
    id: int
    version: int
    status: str
    trainer: str
    params: dict[str, Any]
    metrics: dict[str, Any] = Field(description="Evaluation metrics on the held-out split.")
    artifact_uri: str
    code_version: str | None
    flow_run_id: str | None
    trained_on: TrainingData | None = Field(description="The dataset version it was trained on.")
    created_at: datetime


class Endpoint(BaseModel):
    id: int
    model_version: int
    backend: str
    url: str
    status: str = Field(description="starting, active, failed or stopped.")
    served_model: str | None
    updated_at: datetime


class ModelDetail(BaseModel):
    name: str
    description: str | None
    versions: list[ModelVersion] = Field(description="Every version, newest first.")
    endpoints: list[Endpoint] = Field(description="Every endpoint started for it, newest first.")


@router.get("", summary="List models", response_model=Envelope[list[ModelSummary]])
def list_models(resources: ServerResources) -> Envelope[list[ModelSummary]]:
    """Every model with its newest version."""
    catalog = resources.catalog
    versions: dict[str, list[int]] = {}
    for version in catalog.list_model_versions():
        versions.setdefault(version.model_name, []).append(version.version)
    return ok(
        [
            ModelSummary(
                name=model.name,
                description=model.description,
                latest_version=max(versions.get(model.name, []), default=None),
                version_count=len(versions.get(model.name, [])),
                created_at=model.created_at,
            )
            for model in catalog.list_models()
        ]
    )


@router.get("/{name:path}", include_in_schema=False)  # a name holding '/' reaches the name check
@router.get(
    "/{name}", summary="A model with its versions and endpoints", response_model=Envelope[ModelDetail]
)
def get_model(name: str, resources: ServerResources) -> Envelope[ModelDetail]:
    """Versions with parameters, metrics and the dataset version each was trained on; endpoints."""
    checked("model", name)
    catalog = resources.catalog
    records = sorted(catalog.list_model_versions(name), key=lambda record: -record.version)
    described = next((model for model in catalog.list_models() if model.name == name), None)
    endpoints = sorted(catalog.list_endpoints(name), key=lambda endpoint: -endpoint.id)
    return ok(
        ModelDetail(
            name=name,
            description=described.description if described else None,
            versions=[_version(record, resources) for record in records],
            endpoints=[_endpoint(endpoint) for endpoint in endpoints],
        )
    )


def _version(record: ModelVersionRecord, resources: ServerResources) -> ModelVersion:
    data = resources.catalog.training_dataset(record.id)
    return ModelVersion(
        id=record.id,
        version=record.version,
        status=record.status,
        trainer=record.trainer,
        params=record.params,
        metrics=record.metrics,
        artifact_uri=record.artifact_uri,
        code_version=record.code_version,
        flow_run_id=record.flow_run_id,
        trained_on=None
        if data is None
        else TrainingData(
            dataset=data.dataset_name,
            version=data.version,
            dataset_version_id=data.id,
            content_hash=data.content_hash,
        ),
        created_at=record.created_at,
    )


def _endpoint(endpoint: EndpointRecord) -> Endpoint:
    return Endpoint(
        id=endpoint.id,
        model_version=endpoint.model_version,
        backend=endpoint.backend,
        url=endpoint.url,
        status=endpoint.status,
        served_model=endpoint.served_model,
        updated_at=endpoint.updated_at,
    )
