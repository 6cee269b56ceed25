"""The stages of serving a model version: plan, stage artifacts, launch, check, activate (or roll back), stop.

Each function is one stage that a Prefect task wraps (``tasks/serve.py``). Policy:

- **One active endpoint per model.** A new endpoint becomes ``active`` only after its server answered
  ``/health``, ``/v1/models`` and a smoke chat completion; then every other active endpoint of the same
  model (any version) is marked ``stopped`` (``details.replaced_by`` names the new one) and its process
  group is stopped. So ``Catalog.active_endpoint(name)`` always names a server that answered.
- **Rollback.** A server that cannot start or fails the smoke test is stopped and its endpoint marked
  ``failed`` with the log tail; the model's active endpoint is left as it was.
- **Idempotent.** A version with an active endpoint of the same backend whose process runs and whose
  ``/health`` answers is returned as it is. An active endpoint whose server died is marked ``stopped``.
- **Staging.** Artifacts are copied to ``<home>/model-cache/<content hash>/`` (the hash of the manifest's
  file list: path + sha256 of every file), downloaded to a temporary folder first and renamed into place,
  so a half-downloaded folder is never served and a second deployment of the same content reuses it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ods.adapters.catalog import EndpointCatalog, ModelCatalog, WebhookCatalog
from ods.adapters.catalog.records import EndpointRecord, ModelVersionRecord
from ods.adapters.models.llm import OpenAIChatLLM
from ods.adapters.models.server import (
    BACKENDS,
    WILDCARD_HOST,
    LoraModule,
    ModelServer,
    ModelServerError,
    ServerBackend,
    ServerProcess,
    ServerSpec,
    log_tail,
    served_model_id,
)
from ods.adapters.object_store import ObjectStore
from ods.adapters.workers.processes import free_port
from ods.domain.chat import ChatMessage
from ods.domain.copied_fields import copy_fields
from ods.domain.refs import format_ref, parse_model_ref
from ods.domain.webhooks import MODEL_DEPLOYED, MODEL_FAILED
from ods.errors import OdsError
from ods.stages.train import MANIFEST, artifact_key, download_prefix, manifest_of

LLM_FORMATS = ("hf-causal-lm", "hf-peft-adapter")
ADAPTER_FORMAT = "hf-peft-adapter"
CACHE_DIR = "model-cache"
LOG_DIR = "serving"
COMPLETE_MARKER = ".ods-staged"
SMOKE_PROMPT = "Reply with one word: ready?"
SMOKE_MAX_TOKENS = 4


class ServingError(OdsError):
    """A model version cannot be served as asked (wrong kind of model, bad settings)."""


class DeploymentFailedError(OdsError):
    """The server did not start or failed its smoke test; the previous endpoint stays active."""


@dataclass(frozen=True)
class GpuSettings:
    """vLLM engine settings (``transformers serve`` ignores them)."""

    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ServingError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}; e.g. 0.9"
            )
        if self.tensor_parallel_size < 1:
            raise ServingError(f"tensor_parallel_size must be 1 or more, got {self.tensor_parallel_size}")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ServingError(f"max_model_len must be at least 16 tokens, got {self.max_model_len}")


@dataclass(frozen=True)
class DeploymentPlan:
    """A validated deployment request: which version, where its artifacts are, how it will be served."""

    model_name: str
    version: int
    version_id: int
    trainer: str
    format: str
    artifact_prefix: str
    content_hash: str
    backend: ServerBackend
    host: str
    port: int
    gpu: GpuSettings = field(default_factory=GpuSettings)
    base_model: str | None = None

    @property
    def ref(self) -> str:
        """``NAME@VERSION``."""
        return format_ref(self.model_name, self.version)

    @property
    def is_adapter(self) -> bool:
        return self.format == ADAPTER_FORMAT


@dataclass(frozen=True)
class Launch:
    """A server launched for a plan (or the reason it could not be), with its ``starting`` endpoint."""

    endpoint_id: int
    base_url: str
    spec: ServerSpec
    log_path: str
    pid: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class ServerCheck:
    """Readiness + smoke completion of a launched server."""

    ok: bool
    served_model: str | None = None
    reply: str | None = None
    problem: str | None = None
    ready_seconds: float = 0.0
    smoke_seconds: float = 0.0


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable here (torch is imported only when asked)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_backend(backend: str | None, *, has_gpu: Callable[[], bool] = cuda_available) -> ServerBackend:
    """``backend`` checked, or vLLM when a CUDA GPU is present and ``transformers serve`` otherwise."""
    if backend is None:
        return "vllm" if has_gpu() else "transformers"
    if backend not in BACKENDS:
        raise ServingError(f"unknown serving backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    return backend


def content_hash_of(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's file list (path + sha256 of each file): equal hashes, equal folders."""
    files = sorted((str(item["path"]), str(item["sha256"])) for item in manifest.get("files", []))
    return hashlib.sha256(json.dumps(files).encode("utf-8")).hexdigest()


class ServingCatalog(ModelCatalog, EndpointCatalog, Protocol):
    """The model versions an endpoint serves, and the endpoints."""


def resolve_model_version(catalog: ModelCatalog, ref: str) -> ModelVersionRecord:
    """The version ``NAME[@VERSION]`` names (the newest without a version); NotFoundError lists what exists."""
    name, number = parse_model_ref(ref)
    return catalog.get_model_version(name, number)


def plan_deployment(
    catalog: ModelCatalog,
    store: ObjectStore,
    *,
    model: str,
    backend: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    gpu: GpuSettings | None = None,
    has_gpu: Callable[[], bool] = cuda_available,
) -> DeploymentPlan:
    """Check the request before anything is downloaded or launched."""
    record = resolve_model_version(catalog, model)
    if record.status != "registered":
        raise ServingError(
            f"model {record.model_name} v{record.version} is {record.status}; deploy a registered one"
        )
    manifest = manifest_of(store, record)
    if not manifest:
        raise ServingError(
            f"model {record.model_name} v{record.version} has no readable {MANIFEST} at {record.artifact_uri}; "
            "its artifacts are incomplete or were removed: train it again"
        )
    model_format = str(manifest.get("format", "unknown"))
    if model_format not in LLM_FORMATS:
        raise ServingError(
            f"model {record.model_name} v{record.version} was trained by the {record.trainer!r} trainer "
            f"({model_format}): it is not a language model, so an LLM server cannot serve it; "
            "deploy a causal-lm-sft version"
        )
    chosen = choose_backend(backend, has_gpu=has_gpu)
    if port is not None and not 0 < port < 65536:
        raise ServingError(f"port must be between 1 and 65535, got {port}")
    base_model = None
    if model_format == ADAPTER_FORMAT:
        base_model = str(record.params.get("base_model") or "")
        if not base_model or not Path(base_model).is_dir():
            raise ServingError(
                f"model {record.model_name} v{record.version} is a LoRA adapter on base model {base_model!r}, "
                "which is not a folder on this worker; make the base model available at that path"
            )
        if chosen == "transformers":
            raise ServingError(
                f"model {record.model_name} v{record.version} is a LoRA adapter: `transformers serve` cannot "
                "serve adapters; deploy it with backend vllm (--enable-lora), or train with merge_adapter: true"
            )
    return DeploymentPlan(
        model_name=record.model_name,
        version=record.version,
        version_id=record.id,
        trainer=record.trainer,
        format=model_format,
        artifact_prefix=artifact_key(store, record),
        content_hash=content_hash_of(manifest),
        backend=chosen,
        host=host,
        port=port if port is not None else free_port(host),
        gpu=gpu or GpuSettings(),
        base_model=base_model,
    )


def _same_host(endpoint: EndpointRecord) -> bool:
    return endpoint.details.get("hostname") in (None, socket.gethostname())


def endpoint_is_live(server: ModelServer, endpoint: EndpointRecord) -> bool:
    """Whether the endpoint's process runs (when it is on this host) and its ``/health`` answers."""
    if endpoint.pid is not None and _same_host(endpoint) and not server.is_running(endpoint.pid):
        return False
    return server.is_healthy(endpoint.url)


def find_live_endpoint(
    catalog: EndpointCatalog, server: ModelServer, plan: DeploymentPlan
) -> EndpointRecord | None:
    """The plan's version's active endpoint of the same backend if it still answers; dead ones are stopped."""
    for endpoint in catalog.list_endpoints(plan.model_name, model_version=plan.version, status="active"):
        if endpoint.backend != plan.backend:
            continue
        if endpoint_is_live(server, endpoint):
            return endpoint
        catalog.update_endpoint(
            endpoint.id,
            status="stopped",
            log_tail=log_tail(endpoint.log_path),
            details={"stop_reason": "gone"},
        )
    return None


def stage_artifacts(store: ObjectStore, plan: DeploymentPlan, cache_root: Path) -> tuple[Path, bool]:
    """The version's artifacts in ``cache_root/<content hash>`` (downloaded once); (folder, reused)."""
    target = cache_root / plan.content_hash
    if (target / COMPLETE_MARKER).is_file():
        return target, True
    cache_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{plan.content_hash[:12]}-", dir=cache_root))
    try:
        download_prefix(store, plan.artifact_prefix, scratch)
        (scratch / COMPLETE_MARKER).write_text(plan.ref + "\n", encoding="utf-8")
        if target.exists():  # an incomplete leftover (no marker), or a concurrent stager finished first
            if (target / COMPLETE_MARKER).is_file():
                return target, True
            shutil.rmtree(target)
        scratch.rename(target)
    except OSError:  # a concurrent stager renamed its folder into place first
        if (target / COMPLETE_MARKER).is_file():
            return target, True
        raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target, False


def server_spec(plan: DeploymentPlan, local_dir: Path) -> ServerSpec:
    """What the server loads: the folder (or, for an adapter, the base model plus the adapter as LoRA)."""
    lora: tuple[LoraModule, ...] = ()
    model_dir = local_dir
    if plan.is_adapter and plan.base_model is not None:
        model_dir = Path(plan.base_model)
        lora = (LoraModule(plan.model_name, local_dir),)
    return ServerSpec(
        backend=plan.backend,
        model_dir=model_dir,
        served_name=plan.model_name if not lora else f"{plan.model_name}-base",
        host=plan.host,
        port=plan.port,
        dtype=plan.gpu.dtype,
        max_model_len=plan.gpu.max_model_len,
        tensor_parallel_size=plan.gpu.tensor_parallel_size,
        gpu_memory_utilization=plan.gpu.gpu_memory_utilization,
        lora_modules=lora,
    )


def advertised_url(host: str, port: int) -> str:
    """The URL callers use: ``host`` itself, or this machine's name when the server binds every interface.

    The flow itself checks the server on loopback (:attr:`ServerSpec.base_url`).
    """
    if host in (WILDCARD_HOST, "::", ""):
        host = socket.gethostname()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def log_path_for(home: Path, plan: DeploymentPlan) -> Path:
    """``<home>/serving/<name>-v<N>-<UTC time>-<port>.log``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return (home / LOG_DIR / f"{plan.model_name}-v{plan.version}-{stamp}-{plan.port}.log").resolve()


def start_server(
    catalog: EndpointCatalog,
    server: ModelServer,
    plan: DeploymentPlan,
    local_dir: Path,
    *,
    home: Path,
    flow_run_id: str | None = None,
) -> Launch:
    """Record a ``starting`` endpoint and launch its server; a launch error is returned, not raised."""
    spec = server_spec(plan, local_dir)
    log_path = log_path_for(home, plan)
    details: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "host": plan.host,
        "port": plan.port,
        "local_path": str(local_dir),
        "content_hash": plan.content_hash,
        "flow_run_id": flow_run_id,
    }
    endpoint = catalog.add_served_endpoint(
        plan.version_id,
        backend=plan.backend,
        url=advertised_url(plan.host, plan.port),
        log_path=str(log_path),
        details=details,
    )
    try:
        process: ServerProcess = server.launch(spec, log_path)
    except ModelServerError as error:
        return Launch(endpoint.id, spec.base_url, spec, str(log_path), problem=str(error))
    catalog.update_endpoint(endpoint.id, pid=process.pid, details={"command": list(process.command)})
    return Launch(endpoint.id, spec.base_url, spec, str(log_path), pid=process.pid)


def check_server(server: ModelServer, launch: Launch, *, ready_timeout_s: float) -> ServerCheck:
    """Wait for ``/health`` + ``/v1/models``, then one short chat completion through the served id."""
    if launch.problem is not None or launch.pid is None:
        return ServerCheck(False, problem=launch.problem or "the server was not launched")
    process = ServerProcess(launch.pid, Path(launch.log_path), launch.base_url, ())
    readiness = server.wait_until_ready(process, ready_timeout_s)
    if not readiness.ready:
        return ServerCheck(False, problem=readiness.problem, ready_seconds=readiness.seconds)
    served = served_model_id(launch.spec, readiness.served_models)
    llm = OpenAIChatLLM(launch.base_url, served, timeout_s=max(30.0, ready_timeout_s / 4), max_retries=1)
    try:
        completion = llm.complete([ChatMessage("user", SMOKE_PROMPT)], max_tokens=SMOKE_MAX_TOKENS)
    except OdsError as error:
        return ServerCheck(False, served_model=served, problem=f"smoke completion failed: {error}")
    finally:
        llm.close()
    if completion.usage.completion_tokens == 0 and not completion.text:
        return ServerCheck(False, served_model=served, problem="smoke completion returned no tokens")
    return ServerCheck(
        True,
        served_model=served,
        reply=completion.text,
        ready_seconds=readiness.seconds,
        smoke_seconds=completion.seconds,
    )


def fail_deployment(
    catalog: EndpointCatalog,
    server: ModelServer,
    launch: Launch,
    check: ServerCheck,
    *,
    grace_s: float = 10.0,
) -> EndpointRecord:
    """Stop the new server and record its endpoint ``failed`` with the log tail (others are untouched)."""
    if launch.pid is not None:
        server.stop(launch.pid, grace_s)
    tail = log_tail(launch.log_path)
    endpoint = catalog.update_endpoint(
        launch.endpoint_id, status="failed", log_tail=tail, details={"problem": check.problem}
    )
    announce_endpoint(
        catalog,
        MODEL_FAILED,
        {**endpoint_summary(endpoint).model_dump(mode="json"), "problem": check.problem},
    )
    return endpoint


def activate_endpoint(
    catalog: EndpointCatalog,
    server: ModelServer,
    launch: Launch,
    check: ServerCheck,
    *,
    grace_s: float = 10.0,
) -> tuple[EndpointRecord, list[EndpointRecord]]:
    """Mark the new endpoint active, then stop and mark ``stopped`` the model's other active endpoints."""
    endpoint = catalog.update_endpoint(
        launch.endpoint_id,
        status="active",
        served_model=check.served_model,
        details={
            "smoke_reply": check.reply,
            "ready_seconds": round(check.ready_seconds, 2),
            "smoke_seconds": round(check.smoke_seconds, 2),
        },
    )
    replaced = []
    for other in catalog.list_endpoints(endpoint.model_name, status="active"):
        if other.id == endpoint.id:
            continue
        reason = f"replaced by endpoint {endpoint.id}"
        replaced.append(
            stop_endpoint(catalog, server, other, grace_s=grace_s, reason=reason, replaced_by=endpoint.id)
        )
    announce_endpoint(catalog, MODEL_DEPLOYED, activated_endpoint(endpoint, replaced).model_dump(mode="json"))
    return endpoint, replaced


def announce_endpoint(catalog: EndpointCatalog, event: str, data: dict[str, Any]) -> None:
    """Write ``model.deployed`` or ``model.failed`` to the webhooks' outbox, once per endpoint (a retried
    task writes nothing twice)."""
    if isinstance(catalog, WebhookCatalog):
        catalog.add_outbox_event(event, data, event_key=f"endpoint-{data['endpoint_id']}-{event}")


def stop_endpoint(
    catalog: EndpointCatalog,
    server: ModelServer,
    endpoint: EndpointRecord,
    *,
    grace_s: float = 10.0,
    reason: str = "undeployed",
    replaced_by: int | None = None,
) -> EndpointRecord:
    """Stop an endpoint's process group (when it runs on this host) and mark it ``stopped``."""
    stopped_process = False
    if endpoint.pid is not None and _same_host(endpoint):
        stopped_process = server.stop(endpoint.pid, grace_s)
    details: dict[str, Any] = {"stop_reason": reason, "process_stopped": stopped_process}
    if replaced_by is not None:
        details["replaced_by"] = replaced_by
    if endpoint.pid is not None and not _same_host(endpoint):
        details["process_left_running_on"] = endpoint.details.get("hostname")
    return catalog.update_endpoint(
        endpoint.id, status="stopped", log_tail=log_tail(endpoint.log_path), details=details
    )


def endpoints_to_stop(catalog: ServingCatalog, ref: str) -> list[EndpointRecord]:
    """The active (and starting) endpoints ``NAME`` or ``NAME@VERSION`` names; NotFoundError for an unknown model.

    A ``starting`` endpoint is one being deployed, or left by a deployment run that crashed before it
    recorded an outcome: its server is stopped too, so nothing keeps running unrecorded.
    """
    name, number = parse_model_ref(ref)
    catalog.get_model_version(name, number)  # unknown model or version: NotFoundError naming what exists
    return [
        *catalog.list_endpoints(name, model_version=number, status="active"),
        *catalog.list_endpoints(name, model_version=number, status="starting"),
    ]


class EndpointSummary(BaseModel):
    """An endpoint serving a model version: the deploy-model flow's result and its events' payload basis."""

    model_config = ConfigDict(frozen=True)

    endpoint_id: int
    model: str
    version: int
    model_version_id: int
    backend: str = Field(description="vllm or transformers.")
    url: str = Field(description="Base URL of the OpenAI-compatible API (…/v1).")
    served_model: str = Field(description="The model id requests must send.")
    status: str = Field(description="starting, active, failed or stopped.")
    pid: int | None = Field(description="Process id of the server's process group leader.")
    log_path: str | None
    ready_seconds: float | None = Field(description="Seconds the server took to answer /health.")
    reused: bool = Field(description="True when the version's live endpoint was kept (nothing started).")


class ActivatedEndpoint(EndpointSummary):
    """A newly started endpoint made the model's active one, with the endpoints it replaced."""

    replaced: list[int] = Field(
        description="Ids of the model's endpoints stopped because this one replaced them."
    )


class StoppedEndpoints(BaseModel):
    """What undeploying a model did: the undeploy-model flow's result."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="NAME or NAME@VERSION as asked.")
    stopped: list[EndpointSummary]
    message: str = Field(description="One line saying what was stopped, or why nothing was.")


def endpoint_summary(endpoint: EndpointRecord, *, reused: bool = False) -> EndpointSummary:
    """What a person needs of an endpoint (flow result, event payload, CLI output)."""
    return copy_fields(
        EndpointSummary,
        endpoint,
        endpoint_id=endpoint.id,
        model=endpoint.model_name,
        version=endpoint.model_version,
        served_model=endpoint.served_model or endpoint.model_name,
        ready_seconds=endpoint.details.get("ready_seconds"),
        reused=reused,
    )


def activated_endpoint(endpoint: EndpointRecord, replaced: list[EndpointRecord]) -> ActivatedEndpoint:
    """The summary of a newly active endpoint, naming the endpoints it replaced."""
    return ActivatedEndpoint(**endpoint_summary(endpoint).model_dump(), replaced=[old.id for old in replaced])


def failure_message(
    plan: DeploymentPlan, endpoint: EndpointRecord, check: ServerCheck, lines: int = 15
) -> str:
    """What failed, that the previous endpoint stays active, and the last lines of the server log."""
    tail = "\n".join((endpoint.log_tail or "(no log)").splitlines()[-lines:])
    return (
        f"deploying {plan.ref} with {plan.backend} failed: {check.problem}; endpoint {endpoint.id} is marked "
        f"failed and the model's previously active endpoint (if any) is still serving. "
        f"Log {endpoint.log_path}, last lines:\n{tail}"
    )
