"""Tasks of the deploy_model and undeploy_model flows: thin wrappers adding logging, artifacts and events.

Tasks pass plans, launches and checks (references, ids, URLs) between them, never weights. Nothing here
retries a launch: a server that failed once is recorded as failed, and a new deployment is a new run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from ods.adapters.catalog.records import EndpointRecord
from ods.adapters.models.server import LocalModelServer
from ods.domain.events import MODEL_DEPLOYED, MODEL_FAILED, model_resource, model_version_related
from ods.errors import NotFoundError
from ods.factories import build_object_store, open_catalog
from ods.settings import get_settings
from ods.stages.serve import (
    CACHE_DIR,
    ActivatedEndpoint,
    DeploymentFailedError,
    DeploymentPlan,
    EndpointSummary,
    GpuSettings,
    Launch,
    ServerCheck,
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
from tasks.presets import NOT_PERSISTED, RETRY_TRANSIENT_IO


def _emit(name: str, plan: DeploymentPlan, payload: Mapping[str, Any]) -> None:
    emit_event(
        event=name,
        resource=model_resource(plan.model_name),
        related=[model_version_related(plan.version_id, plan.ref)],
        payload=dict(payload),
    )


@task(name="plan-deployment", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def plan_model_deployment(
    model: str, backend: str | None, host: str | None, port: int | None, gpu: GpuSettings
) -> DeploymentPlan:
    """Resolve the model version and check it can be served as asked (nothing downloaded yet); no
    ``host`` binds the worker's ODS_SERVING__HOST (loopback unless configured)."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        plan = plan_deployment(
            catalog,
            build_object_store(settings),
            model=model,
            backend=backend,
            host=host if host is not None else settings.serving.host,
            port=port,
            gpu=gpu,
        )
    get_run_logger().info(
        "deploying %s (%s, %s) with %s on %s:%d%s",
        plan.ref,
        plan.trainer,
        plan.format,
        plan.backend,
        plan.host,
        plan.port,
        " (CUDA GPU)" if plan.backend == "vllm" else " (CPU)",
    )
    return plan


@task(name="find-live-endpoint", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def find_live_deployment(plan: DeploymentPlan) -> EndpointRecord | None:
    """The version's active endpoint if its server still answers (the idempotent fast path)."""
    with open_catalog(get_settings()) as catalog:
        return find_live_endpoint(catalog, LocalModelServer(), plan)


@task(name="reuse-endpoint", **NOT_PERSISTED)
def reuse_endpoint(plan: DeploymentPlan, endpoint: EndpointRecord) -> EndpointSummary:
    """Return the live endpoint already serving this version."""
    get_run_logger().info(
        "%s is already served at %s (endpoint %d): nothing to do", plan.ref, endpoint.url, endpoint.id
    )
    return endpoint_summary(endpoint, reused=True)


@task(name="stage-artifacts", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def stage_model_artifacts(plan: DeploymentPlan) -> Path:
    """Copy the version's artifacts to this worker's cache (reused when the same content is there)."""
    settings = get_settings()
    local, reused = stage_artifacts(build_object_store(settings), plan, settings.home.resolve() / CACHE_DIR)
    get_run_logger().info("%s artifacts %s %s", plan.ref, "reused from" if reused else "staged to", local)
    return local


@task(name="start-server", **NOT_PERSISTED)
def start_model_server(plan: DeploymentPlan, local_dir: Path) -> Launch:
    """Record a starting endpoint and launch its server detached (it outlives this flow run)."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        launch = start_server(
            catalog,
            LocalModelServer(),
            plan,
            local_dir,
            home=settings.home.resolve(),
            flow_run_id=flow_run.id,
        )
    if launch.problem is None:
        get_run_logger().info(
            "launched %s server pid %s at %s (log %s)",
            plan.backend,
            launch.pid,
            launch.base_url,
            launch.log_path,
        )
    else:
        get_run_logger().error("could not launch the %s server: %s", plan.backend, launch.problem)
    return launch


@task(name="check-server", **NOT_PERSISTED)
def check_model_server(plan: DeploymentPlan, launch: Launch, ready_timeout_s: float) -> ServerCheck:
    """Wait for /health and /v1/models (bounded), then a smoke chat completion."""
    check = check_server(LocalModelServer(), launch, ready_timeout_s=ready_timeout_s)
    if check.ok:
        get_run_logger().info(
            "%s ready in %.1f s as %r; smoke completion in %.2f s: %r",
            plan.ref,
            check.ready_seconds,
            check.served_model,
            check.smoke_seconds,
            check.reply,
        )
    return check


@task(name="fail-deployment", **NOT_PERSISTED)
def fail_model_deployment(plan: DeploymentPlan, launch: Launch, check: ServerCheck) -> None:
    """Stop the new server, record the failure with its log tail, emit ods.model.failed, fail the run."""
    with open_catalog(get_settings()) as catalog:
        endpoint = fail_deployment(catalog, LocalModelServer(), launch, check)
        still_active = catalog.active_endpoint(plan.model_name)
    _emit(
        MODEL_FAILED,
        plan,
        {
            **endpoint_summary(endpoint).model_dump(mode="json"),
            "problem": check.problem,
            "log_tail": endpoint.log_tail,
            "active_endpoint_id": None if still_active is None else still_active.id,
        },
    )
    raise DeploymentFailedError(failure_message(plan, endpoint, check))


@task(name="activate-endpoint", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def activate_model_endpoint(plan: DeploymentPlan, launch: Launch, check: ServerCheck) -> ActivatedEndpoint:
    """Mark the endpoint active, stop the model's endpoints it replaces, emit ods.model.deployed."""
    with open_catalog(get_settings()) as catalog:
        endpoint, replaced = activate_endpoint(catalog, LocalModelServer(), launch, check)
    summary = activated_endpoint(endpoint, replaced)
    _emit(MODEL_DEPLOYED, plan, summary.model_dump(mode="json"))
    logger = get_run_logger()
    for old in replaced:
        logger.info(
            "stopped endpoint %d (%s@%d at %s): replaced", old.id, old.model_name, old.model_version, old.url
        )
    logger.info(
        "%s is served at %s as %r (endpoint %d)", plan.ref, endpoint.url, endpoint.served_model, endpoint.id
    )
    return summary


@task(name="stop-endpoints", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def stop_model_endpoints(model: str, grace_s: float) -> StoppedEndpoints:
    """Stop the active endpoint(s) of ``NAME[@VERSION]`` and mark them stopped; nothing active is not an error."""
    logger = get_run_logger()
    with open_catalog(get_settings()) as catalog:
        try:
            active = endpoints_to_stop(catalog, model)
        except NotFoundError as error:
            logger.warning("%s", error)
            return StoppedEndpoints(model=model, stopped=[], message=str(error))
        server = LocalModelServer()
        stopped = [stop_endpoint(catalog, server, endpoint, grace_s=grace_s) for endpoint in active]
    if not stopped:
        message = f"{model} has no active endpoint: nothing to stop (`ods models endpoints` lists them)"
        logger.warning("%s", message)
        return StoppedEndpoints(model=model, stopped=[], message=message)
    for endpoint in stopped:
        logger.info(
            "stopped endpoint %d (%s@%d at %s)",
            endpoint.id,
            endpoint.model_name,
            endpoint.model_version,
            endpoint.url,
        )
    return StoppedEndpoints(
        model=model,
        stopped=[endpoint_summary(endpoint) for endpoint in stopped],
        message=f"stopped {len(stopped)} endpoint(s) of {model}",
    )
