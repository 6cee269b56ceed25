"""Serving stages without a server: backend choice, GPU settings, content hashes and the staging cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ods.adapters.object_store.local import LocalObjectStore
from ods.stages.serve import (
    COMPLETE_MARKER,
    DeploymentPlan,
    GpuSettings,
    ServingError,
    advertised_url,
    choose_backend,
    content_hash_of,
    server_spec,
    stage_artifacts,
)

PREFIX = "models/bot/key1"


def test_the_backend_follows_the_gpu_unless_given() -> None:
    assert choose_backend(None, has_gpu=lambda: True) == "vllm"
    assert choose_backend(None, has_gpu=lambda: False) == "transformers"
    assert choose_backend("vllm", has_gpu=lambda: False) == "vllm"
    with pytest.raises(ServingError, match="unknown serving backend 'tgi'; use one of: vllm, transformers"):
        choose_backend("tgi")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be 1 or more"),
        ({"max_model_len": 8}, "max_model_len must be at least 16"),
    ],
)
def test_bad_gpu_settings_are_refused(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ServingError, match=message):
        GpuSettings(**settings)  # type: ignore[arg-type]


def test_the_content_hash_depends_on_file_contents_not_order() -> None:
    files = [{"path": "a", "sha256": "1", "size": 1}, {"path": "b", "sha256": "2", "size": 1}]

    assert content_hash_of({"files": files}) == content_hash_of({"files": files[::-1]})
    assert content_hash_of({"files": files}) != content_hash_of(
        {"files": [files[0], {**files[1], "sha256": "3"}]}
    )


def _plan(content_hash: str, **changes: object) -> DeploymentPlan:
    values: dict[str, object] = {
        "model_name": "bot",
        "version": 1,
        "version_id": 1,
        "trainer": "causal-lm-sft",
        "format": "hf-causal-lm",
        "artifact_prefix": PREFIX,
        "content_hash": content_hash,
        "backend": "transformers",
        "host": "127.0.0.1",
        "port": 8000,
    }
    values.update(changes)
    return DeploymentPlan(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "objects")
    store.ensure_ready()
    store.put_bytes(f"{PREFIX}/config.json", b'{"model_type": "llama"}')
    store.put_bytes(f"{PREFIX}/sub/weights.bin", b"\x00" * 16)
    store.put_bytes(f"{PREFIX}/manifest.json", json.dumps({"files": []}).encode())
    return store


def test_staging_downloads_once_then_reuses_the_cached_folder(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    first, reused_first = stage_artifacts(store, _plan("abc"), cache)
    store.delete(f"{PREFIX}/config.json")  # the second call must not read the store at all
    second, reused_second = stage_artifacts(store, _plan("abc"), cache)

    assert (reused_first, reused_second) == (False, True)
    assert first == second == cache / "abc"
    assert (first / "config.json").read_text() == '{"model_type": "llama"}'
    assert (first / "sub" / "weights.bin").stat().st_size == 16
    assert (first / COMPLETE_MARKER).is_file()
    assert sorted(path.name for path in cache.iterdir()) == ["abc"]  # no temporary folder left behind


def test_an_incomplete_cached_folder_is_replaced_not_served(store: LocalObjectStore, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "abc").mkdir(parents=True)
    (cache / "abc" / "config.json").write_text("half written")

    folder, reused = stage_artifacts(store, _plan("abc"), cache)

    assert not reused
    assert (folder / "config.json").read_text() == '{"model_type": "llama"}'


def test_an_adapter_is_served_as_a_lora_module_on_its_base_model(tmp_path: Path) -> None:
    plan = _plan("abc", format="hf-peft-adapter", backend="vllm", base_model=str(tmp_path / "base"))

    spec = server_spec(plan, tmp_path / "cache" / "abc")

    assert spec.model_dir == tmp_path / "base"
    assert spec.served_name == "bot-base"
    assert [(module.name, module.path) for module in spec.lora_modules] == [
        ("bot", tmp_path / "cache" / "abc")
    ]


def test_a_server_on_every_interface_is_advertised_under_this_machines_name() -> None:
    import socket

    assert advertised_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/v1"
    assert advertised_url("0.0.0.0", 8000) == f"http://{socket.gethostname()}:8000/v1"  # noqa: S104
    assert advertised_url("::1", 9000) == "http://[::1]:9000/v1"
