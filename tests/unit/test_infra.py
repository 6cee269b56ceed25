"""Schema-level checks of what cannot run here: the compose cluster, the work-pool templates, the Helm values.

No Docker, Kubernetes or Helm is available to the tests, so each file is checked against what its consumer
reads: Prefect's own base-job-template validator and job-configuration models, the keys of Prefect's worker
chart, and the compose structure (references, ports, volumes, GPU reservations, no literal credentials).
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import prefect.server.api
import pytest
import yaml
from prefect.server.schemas.actions import WorkPoolCreate, validate_base_job_template
from prefect.utilities.templating import apply_values, find_placeholders
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

from ods.api.events_bridge import WEBHOOK_PATH
from ods.stages.serve_manifests import VLLM_VERSION, VllmManifestRequest, render_vllm_manifests

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TEMPLATES = ROOT / "deployments" / "job_templates"
COMPOSE = INFRA / "compose.yaml"
ENV_EXAMPLE = INFRA / "env.example"
WORKER_VALUES = {
    "ods-cpu": INFRA / "helm" / "prefect-worker-cpu.values.yaml",
    "ods-gpu": INFRA / "helm" / "prefect-worker-gpu.values.yaml",
}

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PASSWD|CREDENTIAL)", re.IGNORECASE)
# `${NAME}` or `${NAME:?message}`: taken from infra/.env; a `${NAME:-default}` would be a literal fallback.
REQUIRED_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::\?[^}]*)?\}")
ANY_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?P<rest>[^}]*)\}")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:(?P<password>\$\{[^}]*\}|[^@\s]+)@")


# ---------------------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(entry.split("=", 1) for entry in environment)
    return {name: str(value) for name, value in environment.items()}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _env_example() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            entries[name] = value
    return entries


def test_every_service_has_an_image_and_known_keys(compose: dict[str, Any]) -> None:
    known = {
        "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "depends_on",
        "healthcheck", "restart", "profiles", "deploy", "security_opt", "shm_size", "ipc", "secrets", "hostname",
    }  # fmt: skip
    for name, service in compose["services"].items():
        assert service.get("image"), f"service {name} has no image"
        assert set(service) <= known, f"service {name} has unexpected keys {set(service) - known}"


def test_depends_on_names_services_with_valid_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert spec["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck for {name}"
            # A service outside the default profile cannot be a dependency of one inside it.
            if not service.get("profiles"):
                assert not services[dependency].get("profiles"), f"{name} needs profiled {dependency}"


def test_published_host_ports_are_unique(compose: dict[str, Any]) -> None:
    published: list[str] = []
    for service in compose["services"].values():
        for mapping in service.get("ports") or []:
            parts = str(mapping).split(":")
            assert len(parts) == 2, f"port mapping {mapping!r} should be HOST:CONTAINER"
            published.append(parts[0])
    assert len(published) == len(set(published)), f"host ports published twice: {published}"


def test_named_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith(("./", "../", "/", "${")):
                if not source.startswith("${"):
                    assert (INFRA / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_no_literal_credentials(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable, value in _environment(service).items():
            if SECRET_NAME.search(variable):
                assert REQUIRED_INTERPOLATION.fullmatch(value), (
                    f"{name}: {variable} must be ${{NAME:?}} from .env"
                )
            if match := URL_PASSWORD.search(value):
                password = match["password"]
                assert REQUIRED_INTERPOLATION.fullmatch(password), f"{name}: {variable} embeds a password"
    for text in _strings(compose):
        for match in ANY_INTERPOLATION.finditer(text):
            if SECRET_NAME.search(match["name"]) or "PASSWORD" in match["name"]:
                assert not match["rest"].startswith(("-", ":-")), f"{match[0]} has a literal default"
    assert "minioadmin" not in COMPOSE.read_text()


def test_every_required_variable_is_documented_in_env_example(compose: dict[str, Any]) -> None:
    example = _env_example()
    required = {
        m["name"]
        for text in _strings(compose)
        for m in ANY_INTERPOLATION.finditer(text)
        if m["rest"].startswith(":?")
    }
    assert required <= set(example), f"infra/env.example lacks {sorted(required - set(example))}"
    for variable, value in example.items():
        if SECRET_NAME.search(variable):
            assert value == "CHANGE_ME", f"env.example must not carry a real {variable}"
    assert ".env" in (INFRA / ".gitignore").read_text().split()


def test_gpu_services_reserve_nvidia_devices_and_stay_out_of_the_cpu_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("gpu-worker", "vllm"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
        assert services[name]["profiles"] == ["gpu"]
    gpu_args = services["gpu-worker"]["build"]["args"]
    assert gpu_args["EXTRAS"] == "gpu", "vLLM (the gpu extra) is installed on GPU workers only"
    for name, service in services.items():
        if name not in ("gpu-worker", "vllm"):
            assert "deploy" not in service, f"{name} should not reserve devices"
            assert "vllm" not in json.dumps(service.get("build", {})), f"{name} must not install vLLM"


def test_workers_poll_the_pools_of_prefect_yaml_with_the_repository_templates(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    pools = {
        pool["name"]
        for pool in yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["work_pools"].values()
    }
    polled = {
        services[name]["command"][services[name]["command"].index("--pool") + 1]
        for name in ("cpu-worker", "gpu-worker")
    }
    assert polled == pools
    creation = " ".join(services["work-pools"]["command"])
    for pool in pools:
        kind = pool.removeprefix("ods-")
        assert f"work-pool create {pool} --type process" in creation
        assert f"deployments/job_templates/process-{kind}.json" in creation
    assert creation.endswith("&& ods prefect setup")  # zombie-run detection on the lasting server
    for name in ("cpu-worker", "gpu-worker", "events-bridge"):
        environment = _environment(services[name])
        assert environment["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert environment["ODS_PROFILE"] == "cluster"
        assert environment["ODS_PROJECT_DIR"] == "/opt/ods"


def test_prefect_server_runs_on_the_compose_postgres(compose: dict[str, Any]) -> None:
    server = compose["services"]["prefect-server"]
    url = _environment(server)["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    catalog = _environment(compose["services"]["cpu-worker"])["ODS_CATALOG__URL"]
    assert catalog.startswith("postgresql+psycopg://") and catalog.endswith("@postgres:5432/ods")


def test_minio_webhook_points_at_the_events_bridge(compose: dict[str, Any]) -> None:
    services = compose["services"]
    minio = _environment(services["minio"])
    assert minio["MINIO_NOTIFY_WEBHOOK_ENABLE_ODS"] == "on"
    endpoint = re.fullmatch(
        r"http://(?P<host>[\w-]+):(?P<port>\d+)(?P<path>/\S*)", minio["MINIO_NOTIFY_WEBHOOK_ENDPOINT_ODS"]
    )
    assert endpoint and endpoint["host"] == "events-bridge" and endpoint["port"] == "8787"
    assert endpoint["path"] == WEBHOOK_PATH, "MinIO must post where `ods events bridge` listens"
    bridge = services["events-bridge"]
    assert bridge["command"][:3] == ["ods", "events", "bridge"]
    assert bridge["command"][bridge["command"].index("--port") + 1] == "8787"
    # The token MinIO sends is the token the bridge checks.
    assert minio["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_ODS"] == _environment(bridge)["ODS_WATCH__BRIDGE_TOKEN"]
    setup = " ".join(services["minio-setup"]["command"])
    assert "arn:minio:sqs::ODS:webhook --event put,delete" in setup


def test_milvus_standalone_uses_its_own_etcd_and_minio(compose: dict[str, Any]) -> None:
    services = compose["services"]
    milvus = services["milvus"]
    assert milvus["command"] == ["milvus", "run", "standalone"]
    environment = _environment(milvus)
    assert environment["ETCD_ENDPOINTS"] == "milvus-etcd:2379"
    assert environment["MINIO_ADDRESS"] == "milvus-minio:9000"
    assert set(milvus["depends_on"]) == {"milvus-etcd", "milvus-minio"}
    assert _environment(services["cpu-worker"])["ODS_MILVUS__URI"] == "http://milvus:19530"


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"infra/Dockerfile copies missing {path}"
    assert re.findall(r"^ARG EXTRAS=(.*)$", dockerfile, flags=re.MULTILINE) == ['""'], "no extra by default"


def test_every_vllm_reference_is_the_one_pinned_version(compose: dict[str, Any]) -> None:
    """ods.stages.serve_manifests.VLLM_VERSION is the one vLLM version: the `gpu` extra the GPU worker image
    installs, compose's vllm image and the rendered Kubernetes manifests' image; never `latest`."""
    gpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "gpu"
    ]
    image = compose["services"]["vllm"]["image"]
    tags = re.findall(r"vllm/vllm-openai:(\S+)", COMPOSE.read_text() + ENV_EXAMPLE.read_text())

    assert gpu_extra == [f"vllm=={VLLM_VERSION}"]
    assert image == f"vllm/vllm-openai:${{VLLM_IMAGE_TAG:-v{VLLM_VERSION}}}"
    assert re.findall(r"^# VLLM_IMAGE_TAG=(\S+)", ENV_EXAMPLE.read_text(), flags=re.MULTILINE) == [
        f"v{VLLM_VERSION}"
    ]
    deployment = render_vllm_manifests(VllmManifestRequest("bot", 1, "s3://ods/models/bot/k/"))[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image.replace(
        "${VLLM_IMAGE_TAG:-", ""
    ).rstrip("}")
    assert tags and all(f"v{VLLM_VERSION}" in tag for tag in tags), tags
    for text in (COMPOSE.read_text(), ENV_EXAMPLE.read_text(), (INFRA / "Dockerfile").read_text()):
        assert "vllm>=" not in text and ":latest" not in text and ":-latest" not in text


# ------------------------------------------------------------------------------------ base job templates


def _template(name: str) -> dict[str, Any]:
    return dict(json.loads((TEMPLATES / name).read_text()))


def _kubernetes_default() -> dict[str, Any]:
    """The kubernetes worker's default template as Prefect ships it (prefect-kubernetes is not installed)."""
    metadata = (
        Path(prefect.server.api.__file__).parent / "collections_data/views/aggregate-worker-metadata.json"
    )
    for collection in json.loads(metadata.read_text()).values():
        for worker in collection.values():
            if worker.get("type") == "kubernetes":
                return dict(worker["default_base_job_configuration"])
    raise AssertionError("Prefect no longer ships the kubernetes worker metadata")


def _defaults(template: dict[str, Any]) -> dict[str, Any]:
    return {
        name: copy.deepcopy(spec["default"])
        for name, spec in template["variables"]["properties"].items()
        if "default" in spec
    }


def _render(template: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values = {**_defaults(template), **(overrides or {})}
    rendered = apply_values(template["job_configuration"], values)
    assert isinstance(rendered, dict)
    return rendered


@pytest.mark.parametrize(
    "name", ["process-cpu.json", "process-gpu.json", "kubernetes-cpu.json", "kubernetes-gpu.json"]
)
def test_template_passes_prefects_own_validation(name: str) -> None:
    template = _template(name)
    validate_base_job_template(template)  # what the API runs on `work-pool create --base-job-template`
    kind = name.split("-", 1)[0]
    WorkPoolCreate(
        name=f"ods-{name.split('-')[1].removesuffix('.json')}", type=kind, base_job_template=template
    )
    # Every default fits the variables schema (the UI form and the API validate job variables with it).
    jsonschema.validate(_defaults(template), template["variables"])
    for placeholder in find_placeholders(json.dumps(template["job_configuration"])):
        assert placeholder.name in template["variables"]["properties"]


@pytest.mark.parametrize("name", ["process-cpu.json", "process-gpu.json"])
def test_process_template_extends_the_process_worker_default(name: str) -> None:
    template = _template(name)
    default = ProcessWorker.get_default_base_job_template()
    assert template["job_configuration"] == default["job_configuration"]
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    configuration = ProcessJobConfiguration.model_validate(_render(template))
    assert configuration.env["PREFECT_RESULTS_DEFAULT_SERIALIZER"] == "json"
    assert configuration.env["HF_HUB_OFFLINE"] == "1"
    assert not any(SECRET_NAME.search(variable) for variable in configuration.env)
    pool = "ods-" + name.removeprefix("process-").removesuffix(".json")
    assert configuration.labels == {"ods.pool": pool}


@pytest.mark.parametrize("name", ["kubernetes-cpu.json", "kubernetes-gpu.json"])
def test_kubernetes_template_extends_the_kubernetes_worker_default(name: str) -> None:
    template = _template(name)
    default = _kubernetes_default()
    assert set(default["job_configuration"]) == set(template["job_configuration"])
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    job = _render(template)["job_manifest"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "prefect-job"  # the container the kubernetes worker fills in
    assert container["image"].startswith("one-data-studio")
    assert container["envFrom"] == [{"secretRef": {"name": "ods-credentials"}}]
    assert job["metadata"]["namespace"] == "ods"
    env = _defaults(template)["env"]
    assert not any(SECRET_NAME.search(variable) for variable in env), "credentials come from the Secret"


def test_kubernetes_gpu_template_schedules_on_gpu_nodes() -> None:
    template = _template("kubernetes-gpu.json")
    pod = _render(template)["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]

    # A deployment's job_variables override the defaults with their JSON types intact.
    overridden = _render(template, {"gpu_count": 4, "node_selector": {"pool": "a100"}, "tolerations": []})
    pod = overridden["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert pod["nodeSelector"] == {"pool": "a100"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**_defaults(template), "gpu_count": 0}, template["variables"])


def test_cpu_templates_request_no_gpu() -> None:
    for name in ("kubernetes-cpu.json", "process-cpu.json"):
        assert "nvidia.com/gpu" not in json.dumps(_template(name))


# ------------------------------------------------------------------------------------------- Helm values


@pytest.mark.parametrize("pool", sorted(WORKER_VALUES))
def test_worker_chart_values(pool: str) -> None:
    values = yaml.safe_load(WORKER_VALUES[pool].read_text())
    worker = values["worker"]
    config = worker["config"]
    assert config["workPool"] == pool
    assert config["type"] == "kubernetes"
    assert config["baseJobTemplate"]["existingConfigMapName"] == f"{pool}-base-job-template"
    assert worker["apiConfig"] == "server"
    assert worker["serverApiConfig"]["apiUrl"].endswith(":4200/api")
    assert worker["image"]["repository"] == "prefecthq/prefect"
    assert worker["image"]["prefectTag"].endswith("-kubernetes"), "the worker needs prefect-kubernetes"
    for section in ("requests", "limits"):
        assert set(worker["resources"][section]) == {"cpu", "memory"}
    assert isinstance(worker["nodeSelector"], dict)
    assert isinstance(worker["tolerations"], list)
    for entry in worker.get("extraEnvVars", []):
        assert set(entry) <= {"name", "value", "valueFrom"}
        assert not SECRET_NAME.search(entry["name"]) or "value" not in entry, f"literal {entry['name']}"
    text = WORKER_VALUES[pool].read_text()
    assert f"deployments/job_templates/kubernetes-{pool.removeprefix('ods-')}.json" in text
    assert (TEMPLATES / f"kubernetes-{pool.removeprefix('ods-')}.json").is_file()


def test_server_chart_values_keep_the_database_url_in_a_secret() -> None:
    values = yaml.safe_load((INFRA / "helm" / "prefect-server.values.yaml").read_text())
    assert values["secret"] == {"create": False, "name": "prefect-server-database"}
    assert values["postgresql"]["enabled"] is False
    for text in _strings(values):
        assert not URL_PASSWORD.search(text)
