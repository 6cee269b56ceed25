"""``/api/v1/models``: trained models, their versions with metrics and lineage, and their endpoints;
deploying and undeploying them (background runs) and their endpoints' health."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from ods.adapters.catalog.models import LIVE_ENDPOINT_STATUSES
from ods.adapters.catalog.records import ModelVersionRecord
from ods.adapters.models.server import LocalModelServer
from ods.api.background import DeploymentCall, ServerRuns
from ods.api.deps import ServerResources, checked
from ods.api.envelope import ConflictError, Envelope, ErrorEnvelope, ok
from ods.api.routes.runs import Run, run_view
from ods.api.run_events import RunEventEmitter, emit_quietly, model_deployed_event, model_failed_event
from ods.api.tenancy import CallerTenant, owned_model
from ods.api.views import view_of
from ods.domain.refs import parse_model_ref
from ods.factories import build_object_store
from ods.stages.serve import (
    CACHE_DIR,
    DeploymentFailedError,
    DeploymentPlan,
    EndpointSummary,
    GpuSettings,
    StoppedEndpoints,
    activate_endpoint,
    activated_endpoint,
    check_server,
    endpoint_summary,
    endpoints_to_stop,
    fail_deployment,
    failure_message,
    find_live_endpoint,
    plan_deployment,
    stage_artifacts,
    start_server,
    stop_endpoint,
)

router = APIRouter(prefix="/api/v1/models", tags=["models"])

DEPLOYMENTS = {"vllm": "deploy-model/deploy-model", "transformers": "deploy-model/deploy-model-cpu"}
"""prefect.yaml's deployment of each backend, started instead of an in-server deploy when runs go to
Prefect (``ODS_API__RUNS``): vLLM on the GPU pool, `transformers serve` on the CPU pool."""


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
    owner: str | None = Field(
        default=None,
        description="The subject that created it (ODS_OWNER of the CLI or flow that trained it); null when "
        "made before owners were recorded or by a run `ods serve` started: then only ml_admin (not "
        "ml_engineer) may undeploy or delete it.",
    )
    versions: list[ModelVersion] = Field(description="Every version, newest first.")
    endpoints: list[Endpoint] = Field(description="Every endpoint started for it, newest first.")


@router.get("", summary="List models", response_model=Envelope[list[ModelSummary]])
def list_models(resources: ServerResources, tenant: CallerTenant) -> Envelope[list[ModelSummary]]:
    """Every model of the caller's tenant with its newest version."""
    catalog = resources.catalog.for_tenant(tenant)
    versions: dict[str, list[int]] = {}
    for version in catalog.list_model_versions():
        versions.setdefault(version.model_name, []).append(version.version)
    return ok(
        [
            view_of(
                ModelSummary,
                model,
                latest_version=max(versions.get(model.name, []), default=None),
                version_count=len(versions.get(model.name, [])),
            )
            for model in catalog.list_models()
            if model.tenant == tenant
        ]
    )


class DeployRequest(BaseModel):
    """What ``ods models deploy`` takes: the version and how to serve it."""

    model: str = Field(
        min_length=1,
        max_length=80,
        description="NAME (the newest version) or NAME@VERSION of a causal-LM model.",
    )
    backend: Literal["auto", "transformers", "vllm"] = Field(
        default="auto", description="vllm (GPU) or transformers (CPU); auto: vllm when a CUDA GPU is present."
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="Server port (default: a free one).")
    max_model_len: int | None = Field(default=None, ge=16, description="vllm: context length cap.")
    ready_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="Seconds to wait for the server to answer before it fails."
    )


class UndeployRequest(BaseModel):
    model: str = Field(
        min_length=1,
        max_length=80,
        description="NAME (every active endpoint of the model) or NAME@VERSION (that version's only).",
    )
    grace_s: float = Field(default=10.0, ge=0, le=600, description="Seconds between SIGTERM and SIGKILL.")


_STARTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "The run started; GET /api/v1/runs/{id} follows it."}
}


def _check_owned(ref: str, resources: ServerResources, tenant: str) -> None:
    """The model ``ref`` names (NAME or NAME@VERSION) must be a valid name (else 400) and the caller's
    tenant's (else 404)."""
    name, _ = parse_model_ref(ref)
    checked("model", name)
    owned_model(resources.catalog.for_tenant(tenant), name, tenant)


@router.post(
    "/deploy",
    summary="Deploy a model version (a background run)",
    status_code=202,
    response_model=Envelope[Run],
    responses=_STARTED,
)
def deploy_model(
    request: DeployRequest, resources: ServerResources, runs: ServerRuns, tenant: CallerTenant
) -> JSONResponse:
    """The deploy-model flow's stages, run in the server: the request is checked at once (unknown model
    404, a version that is not a language model 40001), then artifacts are staged, the server launched and
    smoke-tested and the endpoint made the model's active one; a failure leaves the previous one serving."""
    _check_owned(request.model, resources, tenant)
    settings = resources.settings
    plan = plan_deployment(
        resources.catalog.for_tenant(tenant),
        build_object_store(settings),
        model=request.model,
        backend=None if request.backend == "auto" else request.backend,
        host=settings.serving.host,
        port=request.port,
        gpu=GpuSettings(max_model_len=request.max_model_len),
    )
    parameters = {
        "model": plan.ref,
        "backend": plan.backend,
        "port": request.port,
        "max_model_len": request.max_model_len,
        "ready_timeout_s": request.ready_timeout_s,
    }
    run = runs.submit(
        "deploy",
        plan.ref,
        lambda: deploy_in_server(resources, runs.emit, plan, request.ready_timeout_s, tenant),
        f"deploy {plan.ref} with {plan.backend}",
        DeploymentCall(DEPLOYMENTS[plan.backend], lambda: parameters, f"deploy-{plan.ref}"),
        tenant=tenant,
    )
    return JSONResponse(ok(run_view(run)).model_dump(mode="json"), status_code=202)


def deploy_in_server(
    resources: ServerResources,
    emit: RunEventEmitter,
    plan: DeploymentPlan,
    ready_timeout_s: float,
    tenant: str,
) -> EndpointSummary:
    """What ``deploy_model`` composes, in the same order: reuse a live endpoint, else stage, start, check,
    then activate or record the failure, emitting ods.model.deployed or ods.model.failed as its tasks do."""
    settings, catalog, server = resources.settings, resources.catalog.for_tenant(tenant), LocalModelServer()
    live = find_live_endpoint(catalog, server, plan)
    if live is not None:
        return endpoint_summary(live, reused=True)
    home = settings.home.resolve()
    local_dir, _ = stage_artifacts(build_object_store(settings), plan, home / CACHE_DIR)
    launch = start_server(catalog, server, plan, local_dir, home=home)
    check = check_server(server, launch, ready_timeout_s=ready_timeout_s)
    if not check.ok:
        failed = fail_deployment(catalog, server, launch, check)
        still_active = catalog.active_endpoint(plan.model_name)
        payload = {
            **endpoint_summary(failed).model_dump(mode="json"),
            "problem": check.problem,
            "log_tail": failed.log_tail,
            "active_endpoint_id": None if still_active is None else still_active.id,
        }
        emit_quietly(emit, model_failed_event(plan, payload))
        raise DeploymentFailedError(failure_message(plan, failed, check))
    endpoint, replaced = activate_endpoint(catalog, server, launch, check)
    summary = activated_endpoint(endpoint, replaced)
    emit_quietly(emit, model_deployed_event(plan, summary.model_dump(mode="json")))
    return summary


@router.post(
    "/undeploy",
    summary="Stop a model's active endpoints (a background run)",
    status_code=202,
    response_model=Envelope[Run],
    responses=_STARTED,
)
def undeploy_model(
    request: UndeployRequest, resources: ServerResources, runs: ServerRuns, tenant: CallerTenant
) -> JSONResponse:
    """The undeploy-model flow's stage: every active (or starting) endpoint of NAME or NAME@VERSION is
    stopped and marked stopped. An unknown model is 404; a model with none active completes with nothing
    stopped."""
    _check_owned(request.model, resources, tenant)
    endpoints = endpoints_to_stop(resources.catalog.for_tenant(tenant), request.model)

    def stop() -> StoppedEndpoints:
        server = LocalModelServer()
        stopped = [
            stop_endpoint(resources.catalog.for_tenant(tenant), server, endpoint, grace_s=request.grace_s)
            for endpoint in endpoints
        ]
        message = (
            f"stopped {len(stopped)} endpoint(s) of {request.model}"
            if stopped
            else f"{request.model} has no active endpoint: nothing to stop"
        )
        return StoppedEndpoints(
            model=request.model, stopped=[endpoint_summary(endpoint) for endpoint in stopped], message=message
        )

    run = runs.submit(
        "undeploy",
        request.model,
        stop,
        f"undeploy {request.model}",
        DeploymentCall(
            "undeploy-model/undeploy-model",
            lambda: {"model": request.model, "grace_s": request.grace_s},
            f"undeploy-{request.model}",
        ),
        tenant=tenant,
    )
    return JSONResponse(ok(run_view(run)).model_dump(mode="json"), status_code=202)


class EndpointHealth(BaseModel):
    id: int
    model_version: int
    backend: str
    url: str = Field(description="Base URL of its OpenAI-compatible API (…/v1).")
    served_model: str | None = Field(description="The model id its requests take.")
    status: str = Field(description="starting or active, as the catalog records it.")
    healthy: bool = Field(description="Whether its /health answered 200 just now.")
    latency_ms: float = Field(description="How long the health check took.")
    updated_at: datetime


class ModelStatus(BaseModel):
    name: str
    serving: bool = Field(description="Whether an active endpoint answered its health check.")
    endpoints: list[EndpointHealth] = Field(
        description="The model's active and starting endpoints, newest first, each checked now."
    )


HEALTH_TIMEOUT_S = 2.0


@router.get(
    "/{name}/status",
    summary="A model's endpoints with a live health check",
    response_model=Envelope[ModelStatus],
)
def model_status(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[ModelStatus]:
    """Each active or starting endpoint, with whether its ``/health`` answers now (2 s per endpoint)."""
    checked("model", name)
    catalog = resources.catalog.for_tenant(tenant)
    owned_model(catalog, name, tenant)  # unknown or another tenant's: 404 naming the tenant's models
    catalog.get_model_version(name, None)
    endpoints = [
        *catalog.list_endpoints(name, status="active"),
        *catalog.list_endpoints(name, status="starting"),
    ]
    server = LocalModelServer(request_timeout_s=HEALTH_TIMEOUT_S)
    checked_endpoints = []
    for endpoint in sorted(endpoints, key=lambda record: -record.id):
        started = time.perf_counter()
        healthy = server.is_healthy(endpoint.url)
        checked_endpoints.append(
            view_of(
                EndpointHealth,
                endpoint,
                healthy=healthy,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        )
    serving = any(item.healthy and item.status == "active" for item in checked_endpoints)
    return ok(ModelStatus(name=name, serving=serving, endpoints=checked_endpoints))


class DeletedModel(BaseModel):
    name: str
    description: str | None
    versions_deleted: int = Field(description="How many versions were removed from the catalog.")


@router.delete(
    "/{name}",
    summary="Delete a model and its versions",
    response_model=Envelope[DeletedModel],
    responses={409: {"model": ErrorEnvelope, "description": "The model is still served (code 40901)."}},
)
def delete_model(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[DeletedModel]:
    """Remove the model, its versions and its stopped endpoints' records from the catalog; the artifacts
    stay in the object store. A model still served is 409: undeploy it first. ml_engineer may delete only
    the models it created (403 otherwise)."""
    checked("model", name)
    catalog = resources.catalog.for_tenant(tenant)
    owned_model(catalog, name, tenant)
    live = [
        endpoint.url for endpoint in catalog.list_endpoints(name) if endpoint.status in LIVE_ENDPOINT_STATUSES
    ]
    if live:
        raise ConflictError(
            f"model {name!r} is still served at {', '.join(live)}; stop it with "
            "POST /api/v1/models/undeploy first"
        )
    versions = len(catalog.list_model_versions(name))
    removed = catalog.delete_model(name)
    return ok(DeletedModel(name=name, description=removed.description, versions_deleted=versions))


@router.get("/{name:path}", include_in_schema=False)  # a name holding '/' reaches the name check
@router.get(
    "/{name}", summary="A model with its versions and endpoints", response_model=Envelope[ModelDetail]
)
def get_model(name: str, resources: ServerResources, tenant: CallerTenant) -> Envelope[ModelDetail]:
    """Versions with parameters, metrics and the dataset version each was trained on; endpoints."""
    checked("model", name)
    catalog = resources.catalog.for_tenant(tenant)
    described = owned_model(catalog, name, tenant)
    records = sorted(catalog.list_model_versions(name), key=lambda record: -record.version)
    endpoints = sorted(catalog.list_endpoints(name), key=lambda endpoint: -endpoint.id)
    return ok(
        ModelDetail(
            name=name,
            description=described.description,
            owner=described.owner,
            versions=[_version(record, resources) for record in records],
            endpoints=[Endpoint.model_validate(endpoint, from_attributes=True) for endpoint in endpoints],
        )
    )


def _version(record: ModelVersionRecord, resources: ServerResources) -> ModelVersion:
    data = resources.catalog.training_dataset(record.id)
    trained_on = (
        None
        if data is None
        else view_of(TrainingData, data, dataset=data.dataset_name, dataset_version_id=data.id)
    )
    return view_of(ModelVersion, record, trained_on=trained_on)
