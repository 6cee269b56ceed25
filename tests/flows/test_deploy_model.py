"""deploy_model / undeploy_model end to end on CPU: real `transformers serve` processes on the tiny model.

One ODS_HOME (catalog, object store, model cache, logs) is shared by the module so a server started once
serves several tests; every server process recorded in the catalog is stopped when the module ends.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.deploy_model import deploy_model
from flows.undeploy_model import undeploy_model
from ods.adapters.catalog import Catalog
from ods.adapters.models.llm import OpenAIChatLLM
from ods.adapters.models.server import LocalModelServer
from ods.adapters.object_store import ObjectStore
from ods.domain.chat import ChatMessage
from ods.errors import NotFoundError
from ods.factories import build_object_store
from ods.settings import get_settings
from ods.stages.serve import CACHE_DIR, DeploymentFailedError, EndpointSummary, ServingError
from ods.stages.train import MANIFEST, upload_folder
from tests.support.tiny_llm import tiny_model_dir

QUESTION = [ChatMessage("user", "Say something.")]


@dataclass
class Serving:
    home: Path
    catalog: Catalog
    store: ObjectStore
    server: LocalModelServer


@pytest.fixture(scope="module")
def ods_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ODS_HOME for the whole module (overrides the per-test one of tests/conftest.py)."""
    home = tmp_path_factory.mktemp("serving") / "ods-home"
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("ODS_"):
                patch.delenv(name)
        patch.setenv("ODS_HOME", str(home))
        get_settings.cache_clear()
        yield home
    get_settings.cache_clear()


def _register_folder(serving: Serving, name: str, folder: Path, *, key: str, model_format: str) -> int:
    """Store an HF folder as a model version (artifacts + manifest last, then the catalog row)."""
    prefix = f"models/{name}/{key}"
    files = upload_folder(serving.store, folder, prefix)
    manifest = {"model": name, "trainer": "causal-lm-sft", "format": model_format, "files": files}
    serving.store.put_bytes(
        f"{prefix}/{MANIFEST}", json.dumps(manifest).encode(), content_type="application/json"
    )
    trainer = "tabular" if model_format == "sklearn-skops" else "causal-lm-sft"
    record = serving.catalog.add_model_version(
        name, trainer=trainer, params={}, metrics={}, artifact_uri=serving.store.uri(prefix) + "/"
    )
    return record.version


@pytest.fixture(scope="module")
def serving(ods_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    """tiny v1 (the tiny model), v2 (same files with a corrupt config.json), v3 (v1's files again)."""
    settings = get_settings()
    store = build_object_store(settings)
    store.ensure_ready()
    catalog = Catalog.open(settings.catalog_url)
    built = Serving(ods_home, catalog, store, LocalModelServer())
    tiny = tiny_model_dir(tmp_path_factory)
    broken = tmp_path_factory.mktemp("broken") / "model"
    shutil.copytree(tiny, broken)
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ', encoding="utf-8")
    assert _register_folder(built, "tiny", tiny, key="k1", model_format="hf-causal-lm") == 1
    assert _register_folder(built, "tiny", broken, key="k2", model_format="hf-causal-lm") == 2
    assert _register_folder(built, "tiny", tiny, key="k3", model_format="hf-causal-lm") == 3
    _register_folder(built, "churn", tiny, key="k1", model_format="sklearn-skops")
    try:
        yield built
    finally:
        for endpoint in catalog.list_endpoints():
            if endpoint.pid is not None:
                built.server.stop(endpoint.pid, grace_s=5)
        catalog.close()


@pytest.fixture(scope="module")
def deployed(serving: Serving) -> EndpointSummary:
    return deploy_model("tiny@1", "transformers", ready_timeout_s=120)


def _event(name: str, endpoint_id: int) -> Any:
    """The event about ``endpoint_id`` (events ship asynchronously: wait a bounded time)."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=["ods.model.tiny"])
    )
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(event_filter, limit=50).events
            found = [event for event in events if event.payload.get("endpoint_id") == endpoint_id]
            if found or time.monotonic() > deadline:
                assert len(found) == 1, f"{len(found)} {name} events about endpoint {endpoint_id}"
                return found[0]
            time.sleep(0.2)


def _answers(url: str, model: str) -> str:
    llm = OpenAIChatLLM(url, model, timeout_s=30, max_retries=0)
    try:
        return llm.complete(QUESTION, max_tokens=4).text
    finally:
        llm.close()


def test_a_version_is_served_smoke_tested_and_recorded_as_the_models_active_endpoint(
    serving: Serving, deployed: EndpointSummary
) -> None:
    endpoint = serving.catalog.active_endpoint("tiny")

    assert endpoint is not None and endpoint.id == deployed.endpoint_id
    assert (endpoint.model_version, endpoint.backend, endpoint.status) == (1, "transformers", "active")
    assert endpoint.url == deployed.url and endpoint.url.startswith("http://127.0.0.1:")
    assert endpoint.details["host"] == "127.0.0.1"  # no host given: ODS_SERVING__HOST's default, loopback
    # transformers serve names the model by the folder it was given: the catalog records that id.
    staged = serving.home.resolve() / CACHE_DIR / endpoint.details["content_hash"]
    assert endpoint.served_model == deployed.served_model == str(staged)
    assert endpoint.details["smoke_reply"] is not None and serving.server.is_running(endpoint.pid or 0)
    assert Path(endpoint.log_path or "").parent == serving.home.resolve() / "serving"
    assert _answers(endpoint.url, endpoint.served_model or "")
    assert _event("ods.model.deployed", endpoint.id).payload["url"] == endpoint.url


def test_deploying_a_live_version_again_returns_its_endpoint(
    serving: Serving, deployed: EndpointSummary
) -> None:
    again = deploy_model("tiny@1", "transformers")

    assert again.reused is True and again.endpoint_id == deployed.endpoint_id
    assert len(serving.catalog.list_endpoints("tiny")) == 1


def test_the_query_side_reaches_the_deployed_model_by_its_catalog_name(
    deployed: EndpointSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ods.factories import open_llm

    monkeypatch.setenv("ODS_LLM__KIND", "openai")
    monkeypatch.setenv("ODS_LLM__MODEL", "tiny")
    get_settings.cache_clear()
    try:
        llm = open_llm(get_settings())
        assert isinstance(llm, OpenAIChatLLM)
        assert llm.base_url == deployed.url.rstrip("/").removesuffix("/v1") + "/v1"
        assert llm.model_id == deployed.served_model
        assert llm.complete(QUESTION, max_tokens=4).usage.completion_tokens > 0
        llm.close()
    finally:
        get_settings.cache_clear()


def test_a_version_that_cannot_start_is_recorded_failed_and_the_active_endpoint_keeps_serving(
    serving: Serving, deployed: EndpointSummary
) -> None:
    with pytest.raises(DeploymentFailedError) as failure:
        deploy_model("tiny@2", "transformers", ready_timeout_s=120)

    message = str(failure.value)
    assert "deploying tiny@2 with transformers failed" in message and "last lines:" in message
    (failed,) = serving.catalog.list_endpoints("tiny", model_version=2)
    assert failed.status == "failed" and failed.log_tail and failed.log_tail.splitlines()[-1] in message
    assert not serving.server.is_running(failed.pid or 0)
    active = serving.catalog.active_endpoint("tiny")
    assert active is not None and active.id == deployed.endpoint_id
    assert _answers(active.url, active.served_model or "")
    payload = _event("ods.model.failed", failed.id).payload
    assert payload["active_endpoint_id"] == active.id and payload["log_tail"] == failed.log_tail


def test_a_missing_vllm_fails_the_deployment_clearly_and_rolls_back(
    serving: Serving, deployed: EndpointSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM is never installed in this environment; an empty PATH makes sure none is found elsewhere.
    monkeypatch.setenv("PATH", str(serving.home))

    with pytest.raises(DeploymentFailedError, match="`vllm` executable was not found"):
        deploy_model("tiny@1", "vllm")

    failed = serving.catalog.list_endpoints("tiny", status="failed")[0]
    assert (failed.backend, failed.pid, failed.status) == ("vllm", None, "failed")
    active = serving.catalog.active_endpoint("tiny")
    assert active is not None and active.id == deployed.endpoint_id


def test_models_that_are_not_language_models_or_do_not_exist_are_refused(serving: Serving) -> None:
    with pytest.raises(
        ServingError, match=r"trained by the 'tabular' trainer \(sklearn-skops\).*causal-lm-sft"
    ):
        deploy_model("churn", "transformers")
    with pytest.raises(NotFoundError, match="nosuch"):
        deploy_model("nosuch@1")
    with pytest.raises(NotFoundError, match="tiny"):
        deploy_model("tiny@9", "transformers")
    assert serving.catalog.list_endpoints("churn") == []


def test_a_new_version_replaces_the_active_one_and_undeploy_stops_it(
    serving: Serving, deployed: EndpointSummary
) -> None:
    old = serving.catalog.get_endpoint(deployed.endpoint_id)

    new = deploy_model("tiny@3", "transformers", ready_timeout_s=120)  # v1's content: staged folder reused

    replaced = serving.catalog.get_endpoint(old.id)
    assert new.replaced == [old.id]
    assert replaced.status == "stopped" and replaced.details["replaced_by"] == new.endpoint_id
    assert not serving.server.is_running(old.pid or 0)
    assert new.served_model == old.served_model  # the same staged folder
    assert serving.catalog.active_endpoint("tiny").id == new.endpoint_id  # type: ignore[union-attr]

    stopped = undeploy_model("tiny")

    assert [endpoint.endpoint_id for endpoint in stopped.stopped] == [new.endpoint_id]
    assert serving.catalog.get_endpoint(new.endpoint_id).status == "stopped"
    assert not serving.server.is_running(new.pid)
    assert serving.catalog.active_endpoint("tiny") is None
    assert undeploy_model("tiny").message == (
        "tiny has no active endpoint: nothing to stop (`ods models endpoints` lists them)"
    )
    unknown = undeploy_model("nosuch")
    assert unknown.stopped == [] and "nosuch" in unknown.message
