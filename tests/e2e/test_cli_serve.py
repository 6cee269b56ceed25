"""`ods models deploy|endpoints|undeploy` as a user runs them: real processes, an ephemeral Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ods.adapters.catalog import Catalog
from ods.adapters.models.server import LocalModelServer
from ods.adapters.object_store import ObjectStore
from ods.factories import build_object_store
from ods.settings import get_settings
from ods.stages.train import MANIFEST, upload_folder
from tests.support.cli import run_ods
from tests.support.s3_server import S3Server
from tests.support.tiny_llm import tiny_model_dir


def _register(store: ObjectStore, folder: Path, name: str) -> None:
    prefix = f"models/{name}/k1"
    files = upload_folder(store, folder, prefix)
    manifest = {"format": "hf-causal-lm", "files": files}
    store.put_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest).encode())
    with Catalog.open(get_settings().catalog_url) as catalog:
        catalog.add_model_version(
            name, trainer="causal-lm-sft", params={}, metrics={}, artifact_uri=store.uri(prefix) + "/"
        )


def test_deploy_list_and_undeploy_a_model_from_the_command_line(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    store = build_object_store(get_settings())
    store.ensure_ready()
    _register(store, tiny_model_dir(tmp_path_factory), "tiny")
    with Catalog.open(get_settings().catalog_url) as catalog:
        try:
            deployed = run_ods(
                "models", "deploy", "tiny", "--backend", "transformers", "--ready-timeout", "120"
            )
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            endpoint = catalog.active_endpoint("tiny")
            assert endpoint is not None
            assert f"deployed tiny@1 with transformers at {endpoint.url}" in deployed.stdout
            assert f"model id for requests: {endpoint.served_model}" in deployed.stdout

            listed = run_ods("models", "endpoints")
            assert listed.returncode == 0, listed.stderr
            row = next(line for line in listed.stdout.splitlines() if endpoint.url in line)
            assert "tiny" in row and "transformers" in row and "active" in row

            undeployed = run_ods("models", "undeploy", "tiny")
            assert undeployed.returncode == 0, undeployed.stderr
            assert "stopped 1 endpoint(s) of tiny" in undeployed.stdout
            assert catalog.get_endpoint(endpoint.id).status == "stopped"
            assert not LocalModelServer().is_running(endpoint.pid or 0)
        finally:
            for left in catalog.list_endpoints():
                if left.pid is not None:
                    LocalModelServer().stop(left.pid, grace_s=5)


def test_render_k8s_writes_validated_manifests_for_an_s3_stored_version(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "ODS_OBJECT_STORE__KIND": "minio",
        "ODS_OBJECT_STORE__ENDPOINT": s3_server.endpoint,
        "ODS_OBJECT_STORE__ACCESS_KEY": s3_server.access_key,
        "ODS_OBJECT_STORE__SECRET_KEY": s3_server.secret_key,
        "ODS_OBJECT_STORE__BUCKET": "ods-render-k8s",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    store = build_object_store(get_settings())
    store.ensure_ready()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    _register(store, folder, "support_bot")

    rendered = run_ods(
        "models", "deploy", "support_bot", "--render-k8s", str(tmp_path / "k8s"), "--gpus", "2"
    )

    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    path = tmp_path / "k8s" / "vllm-support-bot-v1.yaml"
    assert f"wrote {path}" in rendered.stdout.replace("\n", "")
    deployment, service = yaml.safe_load_all(path.read_text())
    vllm = deployment["spec"]["template"]["spec"]["containers"][0]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 2 and service["kind"] == "Service"
    fetch = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert "s3://ods-render-k8s/models/support_bot/k1/" in fetch["command"]
    assert s3_server.secret_key not in path.read_text()
