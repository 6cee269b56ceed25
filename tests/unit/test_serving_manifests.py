"""vLLM Kubernetes manifests rendered from infra/k8s/vllm.yaml and validated (no cluster needed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ods.stages.serve_manifests import (
    ManifestError,
    VllmManifestRequest,
    render_vllm_manifests,
    validate_vllm_manifests,
    write_manifests,
)

ARTIFACTS = "s3://ods/models/Support_Bot/3f2a/"


def _render(**changes: Any) -> list[dict[str, Any]]:
    return render_vllm_manifests(VllmManifestRequest("Support_Bot", 3, ARTIFACTS, **changes))


def _pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = documents[0]["spec"]["template"]["spec"]
    return pod


def test_default_render_is_a_valid_gpu_deployment_and_service() -> None:
    deployment, service = _render(object_store_endpoint="http://minio.ods:9000", env_secrets=("ods-llm",))

    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "vllm-support-bot-v3"
    assert deployment["metadata"]["labels"]["ods/model"] == "Support_Bot"
    pod = _pod([deployment, service])
    (vllm,) = pod["containers"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert vllm["command"] == ["vllm", "serve"]
    assert vllm["args"][:3] == ["/models/vllm-support-bot-v3", "--served-model-name", "Support_Bot"]
    assert vllm["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert vllm["envFrom"] == [{"secretRef": {"name": "ods-llm", "optional": True}}]
    (fetch,) = pod["initContainers"]
    assert fetch["command"][-2:] == [ARTIFACTS, "/models/vllm-support-bot-v3"]
    secret_refs = [env["valueFrom"]["secretKeyRef"] for env in fetch["env"] if "valueFrom" in env]
    assert secret_refs == [
        {"name": "ods-object-store", "key": "access-key"},
        {"name": "ods-object-store", "key": "secret-key"},
    ]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.ods:9000"} in fetch["env"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert "${" not in yaml.safe_dump_all([deployment, service])


def test_gpu_count_placement_and_engine_settings_are_carried() -> None:
    documents = _render(
        gpu_count=4,
        port=9000,
        max_model_len=8192,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        tolerations=({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"},),
    )

    pod = _pod(documents)
    vllm = pod["containers"][0]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert vllm["args"][vllm["args"].index("--tensor-parallel-size") + 1] == "4"
    assert vllm["args"][-2:] == ["--max-model-len", "8192"]
    assert vllm["ports"][0]["containerPort"] == documents[1]["spec"]["ports"][0]["port"] == 9000
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["tolerations"][0]["effect"] == "NoExecute"


def test_versions_outside_s3_and_bad_counts_are_refused() -> None:
    with pytest.raises(ManifestError, match="which a Kubernetes pod cannot read"):
        render_vllm_manifests(VllmManifestRequest("bot", 1, "file:///home/me/.ods/objects/models/bot/k/"))
    with pytest.raises(ManifestError, match="gpu_count and replicas must be 1 or more"):
        _render(gpu_count=0)


def _broken(change: str) -> list[dict[str, Any]]:
    documents = copy.deepcopy(_render())
    pod = _pod(documents)
    vllm = pod["containers"][0]
    if change == "no-gpu-limit":
        del vllm["resources"]["limits"]["nvidia.com/gpu"]
    elif change == "selector":
        documents[1]["spec"]["selector"] = {"app.kubernetes.io/name": "other"}
    elif change == "target-port":
        documents[1]["spec"]["ports"][0]["targetPort"] = "grpc"
    elif change == "literal-secret":
        vllm["env"].append({"name": "HF_TOKEN", "value": "hf_abc"})
    elif change == "placeholder":
        vllm["image"] = "${IMAGE}"
    elif change == "tensor-parallel":
        vllm["args"][vllm["args"].index("--tensor-parallel-size") + 1] = "8"
    elif change == "missing-service":
        documents.pop()
    return documents


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("no-gpu-limit", "needs a positive integer nvidia.com/gpu limit"),
        ("selector", "Service selector"),
        ("target-port", "targets 'grpc'"),
        ("literal-secret", "HF_TOKEN carries a literal value"),
        ("placeholder", "unfilled placeholder at spec.template.spec.containers[0].image"),
        ("tensor-parallel", "--tensor-parallel-size 8 does not fit the 1 GPU(s)"),
        ("missing-service", "expected one Deployment and one Service"),
    ],
)
def test_the_validator_names_each_problem(change: str, problem: str) -> None:
    problems = validate_vllm_manifests(_broken(change))

    assert any(problem in found for found in problems), problems


def test_a_template_with_an_unknown_placeholder_fails_to_render(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: '${NOPE}'}\n")

    with pytest.raises(ManifestError, match=r"uses \$\{NOPE\}"):
        render_vllm_manifests(VllmManifestRequest("bot", 1, ARTIFACTS), template=template)


def test_written_manifests_read_back_as_the_same_documents(tmp_path: Path) -> None:
    documents = _render()

    path = write_manifests(documents, tmp_path / "k8s")

    assert path.name == "vllm-support-bot-v3.yaml"
    assert list(yaml.safe_load_all(path.read_text())) == documents
