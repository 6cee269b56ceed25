"""Kubernetes manifests for serving a model version with vLLM on a GPU node pool.

The template (``infra/k8s/vllm.yaml``: a Deployment + a ClusterIP Service) is filled from a
:class:`VllmManifestRequest`, then checked by :func:`validate_vllm_manifests` before anything is written:
GPU limits, labels that the selectors match, ports that agree, no unfilled placeholder, secrets by
reference only. The pod fetches the artifacts from the object store (an ``aws s3 sync`` init container),
so only S3-stored versions can be rendered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import yaml

from ods.adapters.models.server import WILDCARD_HOST, ServerSpec, vllm_serve_args
from ods.errors import OdsError

TEMPLATE = Path(__file__).resolve().parents[3] / "infra" / "k8s" / "vllm.yaml"
VLLM_VERSION = "0.33.0"
"""The one vLLM version of the platform: the Kubernetes image tag below, the GPU worker's `gpu` extra
(pyproject.toml, installed by infra/Dockerfile with EXTRAS=gpu) and compose's `vllm` image all use it;
tests/unit/test_infra.py fails when one of them disagrees."""
DEFAULT_VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
DEFAULT_FETCH_IMAGE = "amazon/aws-cli:2.27.0"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_NODE_SELECTOR: Mapping[str, str] = {"nvidia.com/gpu.present": "true"}
DEFAULT_TOLERATIONS: tuple[Mapping[str, str], ...] = (
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_WHOLE_PLACEHOLDER = re.compile(r"^\$\{([A-Z_]+)\}$")
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class ManifestError(OdsError):
    """A manifest cannot be rendered from the request, or the rendered one is not valid."""


@dataclass(frozen=True)
class VllmManifestRequest:
    """One model version on vLLM in Kubernetes: image, GPUs, placement and the Secrets to read.

    ``s3_secret`` must hold ``access-key`` and ``secret-key``; ``env_secrets`` are mounted whole as
    environment (optional Secrets, e.g. an ``HF_TOKEN``). No credential value ever enters a manifest.
    """

    model_name: str
    version: int
    artifact_uri: str
    image: str = DEFAULT_VLLM_IMAGE
    gpu_count: int = 1
    namespace: str = "ods"
    replicas: int = 1
    port: int = 8000
    node_selector: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_NODE_SELECTOR))
    tolerations: Sequence[Mapping[str, str]] = DEFAULT_TOLERATIONS
    s3_secret: str = "ods-object-store"  # noqa: S105 - the name of a Secret, not a credential
    object_store_endpoint: str | None = None
    object_store_region: str = "us-east-1"
    env_secrets: Sequence[str] = ()
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    cpu: str = "4"
    memory: str = "32Gi"
    shm_size: str = "2Gi"
    fetch_image: str = DEFAULT_FETCH_IMAGE

    @property
    def resource_name(self) -> str:
        """``vllm-<model>-v<N>`` as a DNS-1123 label."""
        cleaned = re.sub(r"[^a-z0-9-]+", "-", self.model_name.lower()).strip("-")
        suffix = f"-v{self.version}"
        return ("vllm-" + cleaned)[: 63 - len(suffix)].rstrip("-") + suffix


def _labels(request: VllmManifestRequest) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": request.resource_name,
        "app.kubernetes.io/part-of": "one-data-studio",
        "ods/model": re.sub(r"[^A-Za-z0-9_.-]+", "-", request.model_name)[:63].strip("-_."),
        "ods/model-version": str(request.version),
    }


def _vllm_args(request: VllmManifestRequest, model_dir: str) -> list[str]:
    spec = ServerSpec(
        backend="vllm",
        model_dir=Path("/models") / model_dir,
        served_name=request.model_name,
        # Every interface of the pod, which is right: a pod's address is reached only through the ClusterIP
        # Service in front of it (loopback would make the server unreachable from the Service).
        host=WILDCARD_HOST,
        port=request.port,
        dtype=request.dtype,
        max_model_len=request.max_model_len,
        tensor_parallel_size=request.gpu_count,
        gpu_memory_utilization=request.gpu_memory_utilization,
    )
    return vllm_serve_args(spec)


def _values(request: VllmManifestRequest) -> dict[str, Any]:
    if not request.artifact_uri.startswith("s3://"):
        raise ManifestError(
            f"{request.model_name} v{request.version} is stored at {request.artifact_uri}, which a Kubernetes "
            "pod cannot read; render manifests for versions stored in a MinIO/S3 object store"
        )
    if request.gpu_count < 1 or request.replicas < 1:
        raise ManifestError(
            f"gpu_count and replicas must be 1 or more (got {request.gpu_count}, {request.replicas})"
        )
    endpoint = request.object_store_endpoint or ""
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    selector = {
        key: _labels(request)[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance")
    }
    model_dir = request.resource_name
    return {
        "NAME": request.resource_name,
        "NAMESPACE": request.namespace,
        "LABELS": _labels(request),
        "SELECTOR": selector,
        "REPLICAS": request.replicas,
        "NODE_SELECTOR": dict(request.node_selector),
        "TOLERATIONS": [dict(toleration) for toleration in request.tolerations],
        "SHM_SIZE": request.shm_size,
        "FETCH_IMAGE": request.fetch_image,
        "ARTIFACT_URI": request.artifact_uri.rstrip("/") + "/",
        "MODEL_DIR": model_dir,
        "S3_SECRET": request.s3_secret,
        "S3_ENDPOINT": endpoint,
        "S3_REGION": request.object_store_region,
        "IMAGE": request.image,
        "ARGS": _vllm_args(request, model_dir),
        "PORT": request.port,
        "ENV_FROM": [{"secretRef": {"name": name, "optional": True}} for name in request.env_secrets],
        "CPU": request.cpu,
        "MEMORY": request.memory,
        "GPUS": request.gpu_count,
    }


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        return {_fill(key, values): _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, str):
        whole = _WHOLE_PLACEHOLDER.match(node)
        if whole:
            if whole.group(1) not in values:
                raise ManifestError(
                    f"the template uses ${{{whole.group(1)}}}, which the renderer does not fill"
                )
            return values[whole.group(1)]
        try:
            return Template(node).substitute(values)
        except KeyError as missing:
            raise ManifestError(
                f"the template uses ${{{missing.args[0]}}}, which the renderer does not fill"
            ) from None
    return node


def render_vllm_manifests(request: VllmManifestRequest, template: Path | None = None) -> list[dict[str, Any]]:
    """The Deployment and Service for ``request``, validated (a :class:`ManifestError` lists every problem)."""
    path = template or TEMPLATE
    if not path.is_file():
        raise ManifestError(f"manifest template {path} not found; pass template= or run from a checkout")
    documents = [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]
    rendered = [_fill(document, _values(request)) for document in documents]
    problems = validate_vllm_manifests(rendered)
    if problems:
        raise ManifestError("the rendered vLLM manifests are not valid:\n- " + "\n- ".join(problems))
    return rendered


def _get(document: Mapping[str, Any], *path: str) -> Any:
    node: Any = document
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _placeholders(node: Any, where: str = "") -> list[str]:
    if isinstance(node, Mapping):
        return [found for key, value in node.items() for found in _placeholders(value, f"{where}.{key}")]
    if isinstance(node, list):
        return [
            found for index, item in enumerate(node) for found in _placeholders(item, f"{where}[{index}]")
        ]
    return [where.lstrip(".")] if isinstance(node, str) and "${" in node else []


def _option(args: Sequence[str], name: str) -> str | None:
    if name not in args:
        return None
    index = args.index(name) + 1
    return args[index] if index < len(args) else ""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_vllm_manifests(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every problem found in a rendered Deployment + Service (empty: valid)."""
    by_kind = {str(document.get("kind")): document for document in documents}
    problems = [f"unfilled placeholder at {where}" for doc in documents for where in _placeholders(doc)]
    deployment, service = by_kind.get("Deployment"), by_kind.get("Service")
    if deployment is None or service is None or len(documents) != 2:
        return [*problems, f"expected one Deployment and one Service, got {sorted(by_kind)}"]
    for document, api in ((deployment, "apps/v1"), (service, "v1")):
        name = _get(document, "metadata", "name")
        if document.get("apiVersion") != api:
            problems.append(f"{document['kind']} apiVersion must be {api}")
        if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name):
            problems.append(f"{document['kind']} name {name!r} is not a DNS-1123 label")
    pod_labels = _get(deployment, "spec", "template", "metadata", "labels") or {}
    for owner, selector in (
        ("Deployment", _get(deployment, "spec", "selector", "matchLabels")),
        ("Service", _get(service, "spec", "selector")),
    ):
        if not selector or any(pod_labels.get(key) != value for key, value in selector.items()):
            problems.append(f"{owner} selector {selector} does not match the pod labels {pod_labels}")
    if not _positive_int(_get(deployment, "spec", "replicas")):
        problems.append("Deployment replicas must be a positive integer")
    pod = _get(deployment, "spec", "template", "spec") or {}
    containers = {container.get("name"): container for container in pod.get("containers") or []}
    vllm = containers.get("vllm")
    if vllm is None:
        return [*problems, "the pod has no container named vllm"]
    if not vllm.get("image"):
        problems.append("the vllm container has no image")
    limits = _get(vllm, "resources", "limits") or {}
    requests = _get(vllm, "resources", "requests") or {}
    if not _positive_int(limits.get(GPU_RESOURCE)):
        problems.append(f"the vllm container needs a positive integer {GPU_RESOURCE} limit")
    elif GPU_RESOURCE in requests and requests[GPU_RESOURCE] != limits[GPU_RESOURCE]:
        problems.append(
            f"{GPU_RESOURCE} request and limit must be equal (extended resources are not overcommitted)"
        )
    if not limits.get("memory"):
        problems.append("the vllm container needs a memory limit")
    ports = {port.get("name"): port.get("containerPort") for port in vllm.get("ports") or []}
    if not all(_positive_int(number) and number < 65536 for number in ports.values()) or not ports:
        problems.append(f"the vllm container ports {ports} are not valid")
    for port in _get(service, "spec", "ports") or []:
        target = port.get("targetPort")
        if target not in ports and target not in ports.values():
            problems.append(
                f"Service port {port.get('name')} targets {target!r}, which the vllm container lacks"
            )
    args = [str(arg) for arg in vllm.get("args") or []]
    if _option(args, "--port") not in (None, *(str(number) for number in ports.values())):
        problems.append("vllm --port does not match the container port")
    parallel = _option(args, "--tensor-parallel-size")
    gpus: int = limits.get(GPU_RESOURCE) or 0
    if parallel is not None and _positive_int(gpus) and (not parallel.isdigit() or int(parallel) > gpus):
        problems.append(f"--tensor-parallel-size {parallel} does not fit the {gpus} GPU(s) the pod gets")
    for toleration in pod.get("tolerations") or []:
        if toleration.get("operator", "Equal") not in _TOLERATION_OPERATORS or (
            toleration.get("effect") and toleration["effect"] not in _TOLERATION_EFFECTS
        ):
            problems.append(f"toleration {toleration} has an unknown operator or effect")
    if not isinstance(pod.get("nodeSelector") or {}, Mapping):
        problems.append("nodeSelector must be a mapping")
    for container in [*(pod.get("initContainers") or []), *containers.values()]:
        for variable in container.get("env") or []:
            if "value" in variable and re.search(r"(?i)secret|password|token|key", str(variable["name"])):
                problems.append(
                    f"{container.get('name')}: {variable['name']} carries a literal value; use a Secret"
                )
            reference = _get(variable, "valueFrom", "secretKeyRef")
            if reference is not None and not (reference.get("name") and reference.get("key")):
                problems.append(
                    f"{container.get('name')}: {variable.get('name')} secretKeyRef needs a name and a key"
                )
    return problems


def write_manifests(documents: Sequence[Mapping[str, Any]], directory: Path) -> Path:
    """Write the documents as one multi-document YAML file ``<directory>/<name>.yaml``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    name = str(_get(documents[0], "metadata", "name") or "vllm")
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(list(documents), sort_keys=False), encoding="utf-8")
    return path
