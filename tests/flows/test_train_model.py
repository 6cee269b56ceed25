"""train_model end to end on the Prefect test server, on datasets prepared for real by prepare_dataset."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.deploy_model import deploy_model
from flows.prepare_dataset import prepare_dataset
from flows.train_model import train_model
from flows.undeploy_model import undeploy_model
from ods.adapters.catalog import Catalog
from ods.adapters.models.llm import OpenAIChatLLM
from ods.adapters.object_store import ObjectStore
from ods.domain.chat import ChatMessage
from ods.domain.training_spec import TrainingSpecError
from ods.errors import NotFoundError
from ods.factories import build_object_store
from ods.settings import Settings, get_settings
from ods.stages.prepare import DatasetRejectedError, DatasetVersionSummary
from ods.stages.sample_data import write_sales_example
from ods.stages.train import (
    code_version,
    download_prefix,
    plan_training,
    register_trained_version,
    train_and_store,
)
from ods.trainers.base import BaseModelError, TrainingDataError
from ods.trainers.tabular import load_tabular_model
from tests.support.postgres import temporary_database
from tests.support.s3_server import S3Server
from tests.support.tiny_llm import Interrupted, stop_after_checkpoint, tiny_model_dir

FAST_TABULAR = {"max_iter": 30}


@dataclass
class Platform:
    settings: Settings
    store: ObjectStore
    catalog: Catalog

    def object_keys(self, prefix: str = "") -> list[str]:
        return [info.key for info in self.store.list(prefix)]


@contextlib.contextmanager
def _platform(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    with temporary_database() if kind == "s3-postgres" else contextlib.nullcontext("") as database_url:
        if kind == "s3-postgres":
            server: S3Server = request.getfixturevalue("s3_server")
            monkeypatch.setenv("ODS_CATALOG__URL", database_url)
            monkeypatch.setenv("ODS_OBJECT_STORE__KIND", "minio")
            monkeypatch.setenv("ODS_OBJECT_STORE__ENDPOINT", server.endpoint)
            monkeypatch.setenv("ODS_OBJECT_STORE__ACCESS_KEY", server.access_key)
            monkeypatch.setenv("ODS_OBJECT_STORE__SECRET_KEY", server.secret_key)
            monkeypatch.setenv("ODS_OBJECT_STORE__BUCKET", f"ods-{abs(hash(request.node.name)) % 10**12}")
        get_settings.cache_clear()
        settings = get_settings()
        store = build_object_store(settings)
        store.ensure_ready()
        catalog = Catalog.open(settings.catalog_url)
        yield Platform(settings, store, catalog)
        catalog.close()


@pytest.fixture
def platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The embedded defaults: a local object store and a SQLite catalog."""
    with _platform("local-sqlite", request, monkeypatch) as built:
        yield built


@pytest.fixture(params=["local-sqlite", "s3-postgres"])
def any_platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The embedded defaults, or the cluster's real parts: an S3 server and PostgreSQL."""
    with _platform(request.param, request, monkeypatch) as built:
        yield built


def _event_of_run(name: str, resource_id: str, flow_run_id: str) -> Any:
    """The event a flow run emitted (events ship asynchronously: wait a bounded time)."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id])
    )
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(event_filter, limit=50).events
            found = [event for event in events if event.payload.get("flow_run_id") == flow_run_id]
            if found or time.monotonic() > deadline:
                assert len(found) == 1, f"{len(found)} {name} events from flow run {flow_run_id}"
                return found[0]
            time.sleep(0.2)


def _prepare_sales(directory: Path, rows: int = 400) -> DatasetVersionSummary:
    _, spec = write_sales_example(directory, rows=rows)
    return prepare_dataset(str(spec))


def test_tabular_model_is_trained_on_a_registered_dataset_with_lineage(
    any_platform: Platform, tmp_path: Path
) -> None:
    prepared = _prepare_sales(tmp_path)

    result = train_model("sales", "tabular", target="returned", params=FAST_TABULAR)

    assert (result.model, result.version, result.reused) == ("sales", 1, False)
    assert result.dataset == "sales@1"
    assert set(result.metrics) >= {"accuracy", "f1_macro", "baseline_accuracy", "train_rows", "test_rows"}
    assert result.metrics["train_rows"] + result.metrics["test_rows"] == prepared.rows
    platform = any_platform
    version = platform.catalog.get_model_version("sales")
    assert version.dataset_version_id == prepared.version_id
    assert version.params["target"] == "returned" and version.params["max_iter"] == 30
    assert version.code_version and version.code_version == code_version()
    assert version.flow_run_id == result.flow_run_id is not None
    trained_on = platform.catalog.training_dataset(version.id)
    assert trained_on is not None and trained_on.source_uri == (tmp_path / "sales.csv").resolve().as_uri()
    prefix = f"models/sales/{result.training_key}"
    assert version.artifact_uri == platform.store.uri(prefix) + "/"
    assert platform.object_keys(prefix) == [
        f"{prefix}/{name}"
        for name in ("README.md", "feature_schema.json", "manifest.json", "metrics.json", "model.skops")
    ]
    local = download_prefix(platform.store, prefix, tmp_path / "downloaded")
    model = load_tabular_model(local)
    frame = pd.read_parquet(
        prepared.uri.removeprefix(platform.store.location), filesystem=platform.store.filesystem()
    )
    assert len(model.predict(frame.head(5))) == 5
    card = (local / "README.md").read_text()
    assert "dataset version | sales@1" in card and "accuracy" in card
    event = _event_of_run("ods.model.registered", "ods.model.sales", result.flow_run_id)
    assert event.payload["version"] == 1
    assert event.payload["artifact_uri"] == version.artifact_uri
    assert event.payload["metrics"]["accuracy"] == result.metrics["accuracy"]


def test_the_same_request_returns_the_registered_version_and_a_new_seed_trains_another(
    platform: Platform, tmp_path: Path
) -> None:
    _prepare_sales(tmp_path, rows=200)
    first = train_model("sales", "tabular", target="returned", params=FAST_TABULAR)
    objects = [(info.key, info.etag) for info in platform.store.list("models/")]

    again = train_model("sales", "tabular", target="returned", params=FAST_TABULAR)
    other = train_model(
        "sales", "tabular", target="returned", params={**FAST_TABULAR, "seed": 7}, model_name="sales-b"
    )

    assert again == first.model_copy(update={"reused": True})
    assert [(info.key, info.etag) for info in platform.store.list("models/sales/")] == objects
    assert (other.model, other.version) == ("sales-b", 1)
    assert [v.version for v in platform.catalog.list_model_versions("sales")] == [1]


def test_a_retried_run_adopts_stored_artifacts_and_registers_once(platform: Platform, tmp_path: Path) -> None:
    """A run that died after storing artifacts, retried under the same flow-run id, registers one version."""
    _prepare_sales(tmp_path, rows=200)
    plan = plan_training(
        platform.catalog,
        dataset="sales",
        trainer="tabular",
        target="returned",
        params=FAST_TABULAR,
        code=code_version(),
    )
    stored = train_and_store(plan, platform.store)
    manifest_etag = platform.store.stat(f"{plan.artifact_prefix}/manifest.json").etag

    retried = train_and_store(plan, platform.store)
    first = register_trained_version(platform.catalog, platform.store, plan, retried, flow_run_id="run-1")
    second = register_trained_version(platform.catalog, platform.store, plan, retried, flow_run_id="run-1")
    via_flow = train_model("sales", "tabular", target="returned", params=FAST_TABULAR)

    assert (stored.adopted, retried.adopted) == (False, True)
    assert retried.metrics == stored.metrics
    assert platform.store.stat(f"{plan.artifact_prefix}/manifest.json").etag == manifest_etag
    assert first == second
    assert (via_flow.version, via_flow.reused) == (1, True)
    assert [v.flow_run_id for v in platform.catalog.list_model_versions("sales")] == ["run-1"]


def test_rejected_unknown_or_unfit_datasets_fail_clearly_and_write_nothing(
    platform: Platform, tmp_path: Path
) -> None:
    csv_path, spec_path = write_sales_example(tmp_path, rows=100)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.loc[3, "status"] = "lost"
    frame.to_csv(csv_path, index=False)
    with pytest.raises(DatasetRejectedError):
        prepare_dataset(str(spec_path))

    failures = {
        "rejected": (DatasetRejectedError, lambda: train_model("sales@1", target="returned")),
        "no registered": (NotFoundError, lambda: train_model("sales", target="returned")),
        "unknown": (NotFoundError, lambda: train_model("orders", target="returned")),
        "bad param": (
            TrainingSpecError,
            lambda: train_model("sales@1", target="returned", params={"depth": 3}),
        ),
    }
    messages = {}
    for name, (error, call) in failures.items():
        with pytest.raises(error) as raised:
            call()
        messages[name] = str(raised.value)

    assert messages["rejected"].startswith("dataset 'sales' v1 is rejected (failed expectations: ")
    assert "train on a registered version" in messages["rejected"]
    assert messages["no registered"] == "dataset 'sales' has no registered version; versions: 1 (rejected)"
    assert messages["unknown"] == "no dataset named 'orders'; known datasets: sales"
    assert "unknown parameter 'depth'" in messages["bad param"]
    assert platform.object_keys("models/") == [] and platform.catalog.list_models() == []


def test_missing_target_or_text_columns_and_bad_base_models_fail_before_training(
    platform: Platform, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _prepare_sales(tmp_path, rows=100)

    with pytest.raises(
        TrainingDataError,
        match=r"target column 'churned' is not in dataset sales@1; its columns are: order_id, ",
    ):
        train_model("sales", target="churned")
    with pytest.raises(TrainingDataError, match="needs a target column"):
        train_model("sales")
    with pytest.raises(BaseModelError, match="is not a local directory"):
        train_model("sales", "causal-lm-sft", base_model="HuggingFaceTB/SmolLM2-135M")
    with pytest.raises(
        TrainingDataError, match=r"needs text columns 'prompt' and 'response'.*columns are: order_id"
    ):
        train_model("sales", "causal-lm-sft", base_model=str(tiny_model_dir(tmp_path_factory)))

    assert [key for key in platform.object_keys() if not key.startswith("datasets/")] == []


INSTRUCTIONS_SPEC = """\
name: arithmetic_sft
description: Question and answer pairs for a supervised fine-tuning smoke test
source:
  uri: arithmetic.csv
steps:
  - normalize: {columns: all, trim: true}
expectations:
  - not_null: {column: prompt}
  - not_null: {column: response}
  - row_count: {min: 10}
train:
  trainer: causal-lm-sft
"""


def test_causal_lm_is_fine_tuned_resumed_from_a_checkpoint_and_stored_as_a_loadable_hf_folder(
    platform: Platform, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_model_dir(tmp_path_factory)
    pd.DataFrame(
        {"prompt": [f"What is {i} plus {i}?" for i in range(24)], "response": [f"{2 * i}" for i in range(24)]}
    ).to_csv(tmp_path / "arithmetic.csv", index=False)
    (tmp_path / "arithmetic.yaml").write_text(INSTRUCTIONS_SPEC, encoding="utf-8")
    prepared = prepare_dataset(str(tmp_path / "arithmetic.yaml"))
    params = {"method": "lora", "max_steps": 4, "save_steps": 2, "batch_size": 4, "max_length": 64}
    plan = plan_training(
        platform.catalog,
        dataset="arithmetic_sft",
        trainer="causal-lm-sft",
        base_model=str(base),
        params=params,
        model_name="arith",
        code=code_version(),
    )
    with pytest.raises(Interrupted):  # the first attempt dies right after checkpoint 2 reached the store
        train_and_store(plan, platform.store, callbacks=[stop_after_checkpoint(2)])
    assert any(key.endswith("checkpoint-2/COMPLETE") for key in platform.object_keys("checkpoints/arith/"))

    result = train_model(
        "arithmetic_sft", "causal-lm-sft", base_model=str(base), params=params, model_name="arith"
    )

    assert (result.model, result.version, result.training_key) == ("arith", 1, plan.key)
    assert result.metrics["steps"] == 4 and result.metrics["eval_examples"] >= 1
    manifest = json.loads(platform.store.get_bytes(f"{plan.artifact_prefix}/manifest.json"))
    assert manifest["format"] == "hf-causal-lm"
    assert manifest["details"]["resumed from step"] == 2
    assert manifest["details"]["device"].startswith("cpu")
    assert platform.object_keys("checkpoints/") == []
    version = platform.catalog.get_model_version("arith")
    assert version.dataset_version_id == prepared.version_id
    assert version.params["base_model"] == str(base) and version.params["method"] == "lora"
    folder = download_prefix(platform.store, plan.artifact_prefix, tmp_path / "served")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 2?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert output.shape[1] == prompt["input_ids"].shape[1] + 5
    event = _event_of_run("ods.model.registered", "ods.model.arith", result.flow_run_id)
    assert event.payload["artifact_uri"] == version.artifact_uri

    # The whole model path: the trained version is served on CPU, answers through the openai SDK, can be
    # traced from its endpoint back to the raw file, and is stopped again.
    deployed = deploy_model("arith", "transformers", ready_timeout_s=120)
    try:
        llm = OpenAIChatLLM(deployed.url, deployed.served_model, timeout_s=30, max_retries=0)
        reply = llm.complete([ChatMessage("user", "What is 2 plus 2?")], max_tokens=4)
        llm.close()
        assert reply.usage.completion_tokens > 0
        lineage = platform.catalog.lineage_of_endpoint(deployed.endpoint_id)
        assert (lineage.model_name, lineage.model_version) == ("arith", 1)
        assert lineage.dataset_version_id == prepared.version_id
        assert (lineage.source_uri or "").endswith("arithmetic.csv")
    finally:
        stopped = undeploy_model("arith")
    assert stopped.stopped and platform.catalog.active_endpoint("arith") is None
