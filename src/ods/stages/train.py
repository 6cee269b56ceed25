"""The stages of training a model version: plan, (find or) train, store artifacts, register.

Each function is one stage that a Prefect task wraps (``tasks/train.py``). A run is named by its
:func:`~ods.domain.training_spec.training_key` (model name, dataset content hash, resolved parameters,
code version), and everything it writes lives under key-derived prefixes:

- ``models/<name>/<key>/``: the finished artifacts; ``manifest.json`` is written last, so its presence
  means the folder is complete. The catalog row comes after the manifest, so a registered version always
  points at complete artifacts, and a crash in between is adopted by the next run (nothing retrained).
- ``checkpoints/<name>/<key>/checkpoint-<step>/``: the causal-LM trainer's checkpoints; a retried or
  repeated run resumes from the newest complete one. They are removed once the version is registered.

Re-running the same request (same dataset version, trainer, parameters and code) returns the version
already registered instead of training again; change a parameter (e.g. ``seed``) to train a new one.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ods.adapters.catalog import DatasetCatalog, ModelCatalog
from ods.adapters.catalog.records import DatasetVersionRecord, ModelVersionRecord
from ods.adapters.object_store import ObjectStore, key_of
from ods.domain.copied_fields import copy_fields
from ods.domain.model_card import render_model_card
from ods.domain.refs import format_ref, parse_dataset_ref
from ods.domain.training_spec import (
    CausalLmParams,
    TabularParams,
    TrainerName,
    check_model_name,
    check_trainer,
    parse_trainer_params,
    resolved_params,
    training_key,
)
from ods.errors import OdsError
from ods.stages.prepare import DatasetRejectedError
from ods.trainers.base import ModelTrainer, TrainedModel, TrainingDataError

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from ods.trainers.causal_lm import Device

MODELS_PREFIX = "models"
CHECKPOINTS_PREFIX = "checkpoints"
MANIFEST = "manifest.json"
CARD = "README.md"
COMPLETE_MARKER = "COMPLETE"
PACKAGE = "one-data-studio"


@dataclass(frozen=True)
class TrainingPlan:
    """A validated training request: the dataset version it reads, the resolved parameters, its key.

    Only plain fields, so Prefect passes it between tasks cheaply.
    """

    model_name: str
    trainer: TrainerName
    dataset_name: str
    dataset_version: int
    dataset_version_id: int
    dataset_uri: str
    dataset_content_hash: str
    params: dict[str, Any]
    code_version: str | None
    key: str

    @property
    def artifact_prefix(self) -> str:
        """Where the finished artifacts live: ``models/<name>/<key>``."""
        return f"{MODELS_PREFIX}/{self.model_name}/{self.key}"

    @property
    def checkpoint_prefix(self) -> str:
        """Where checkpoints live while the run is unfinished: ``checkpoints/<name>/<key>``."""
        return f"{CHECKPOINTS_PREFIX}/{self.model_name}/{self.key}"

    @property
    def dataset_ref(self) -> str:
        """``NAME@VERSION`` of the dataset version trained on."""
        return format_ref(self.dataset_name, self.dataset_version)


@dataclass(frozen=True)
class StoredModel:
    """Artifacts stored under a plan's prefix, as recorded in their manifest."""

    artifact_uri: str
    format: str
    metrics: dict[str, float | int]
    details: dict[str, Any] = field(default_factory=dict)
    files: int = 0
    size_bytes: int = 0
    adopted: bool = False


@lru_cache(maxsize=1)
def code_version() -> str | None:
    """``<package version>+g<git sha>`` (the sha when running from a git checkout), else the version."""
    try:
        version: str | None = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return version
    sha = found.stdout.strip() if found.returncode == 0 else ""
    if not sha:
        return version
    return f"{version or '0'}+g{sha}"


def resolve_dataset(catalog: DatasetCatalog, ref: str) -> DatasetVersionRecord:
    """The dataset version ``NAME[@VERSION]`` names (the newest registered one without a version).

    A rejected version is refused: its data failed the quality gate.
    """
    name, number = parse_dataset_ref(ref)
    record = catalog.get_dataset_version(name, number)
    if record.status != "registered":
        raise DatasetRejectedError(
            f"dataset {record.dataset_name!r} v{record.version} is {record.status} ({record.reason}); "
            f"train on a registered version (`ods datasets show {record.dataset_name}`)"
        )
    return record


def _schema_columns(record: DatasetVersionRecord) -> list[str]:
    return [column["name"] for column in record.schema.get("columns", [])]


def plan_training(
    catalog: DatasetCatalog,
    *,
    dataset: str,
    trainer: str,
    target: str | None = None,
    base_model: str | None = None,
    params: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    code: str | None = None,
) -> TrainingPlan:
    """Check everything a run needs before any data is read: trainer, parameters, dataset, target, base model."""
    trainer_name = check_trainer(trainer)
    parsed = parse_trainer_params(trainer_name, params)
    record = resolve_dataset(catalog, dataset)
    name = check_model_name(model_name or record.dataset_name)
    inputs: dict[str, Any] = {}
    if isinstance(parsed, TabularParams):
        columns = _schema_columns(record)
        if not target:
            raise TrainingDataError(
                f"the tabular trainer needs a target column (the one to predict); "
                f"dataset {record.dataset_name}@{record.version} has: {', '.join(columns)}"
            )
        if columns and target not in columns:
            raise TrainingDataError(
                f"target column {target!r} is not in dataset {record.dataset_name}@{record.version}; "
                f"its columns are: {', '.join(columns)}"
            )
        inputs["target"] = target
    else:
        from ods.trainers.causal_lm import base_model_fingerprint, check_base_model

        base = check_base_model(base_model)
        inputs["base_model"] = str(base)
        inputs["base_model_fingerprint"] = base_model_fingerprint(base)
    resolved = resolved_params(trainer_name, parsed, **inputs)
    return TrainingPlan(
        model_name=name,
        trainer=trainer_name,
        dataset_name=record.dataset_name,
        dataset_version=record.version,
        dataset_version_id=record.id,
        dataset_uri=record.uri,
        dataset_content_hash=record.content_hash,
        params=resolved,
        code_version=code,
        key=training_key(
            model_name=name, dataset_content_hash=record.content_hash, resolved=resolved, code_version=code
        ),
    )


def artifact_uri(store: ObjectStore, plan: TrainingPlan) -> str:
    """The URI of a plan's artifact folder (with a trailing '/')."""
    return store.uri(plan.artifact_prefix) + "/"


def find_trained_version(
    catalog: ModelCatalog, store: ObjectStore, plan: TrainingPlan
) -> ModelVersionRecord | None:
    """The version an earlier run registered for exactly this request, if any."""
    return catalog.find_model_version(plan.model_name, artifact_uri=artifact_uri(store, plan))


def read_dataset_frame(store: ObjectStore, uri: str) -> pd.DataFrame:
    """A registered version's Parquet, read in place through the store's pyarrow filesystem."""
    return pd.read_parquet(key_of(store, uri), filesystem=store.filesystem())


class ObjectStoreCheckpoints:
    """A :class:`~ods.trainers.base.CheckpointStore` under one object-store prefix.

    A checkpoint counts only once its ``COMPLETE`` marker (written after every file) is there, so a
    run killed mid-upload never resumes from half a checkpoint.
    """

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    def _complete_steps(self) -> list[int]:
        steps = []
        for info in self._store.list(self._prefix + "/"):
            relative = info.key.removeprefix(self._prefix + "/")
            folder, _, rest = relative.partition("/")
            if rest == COMPLETE_MARKER and folder.startswith("checkpoint-"):
                steps.append(int(folder.removeprefix("checkpoint-")))
        return sorted(steps)

    def restore_latest(self, directory: Path) -> Path | None:
        """Download the newest complete checkpoint into ``directory/checkpoint-<step>``."""
        steps = self._complete_steps()
        if not steps:
            return None
        name = f"checkpoint-{steps[-1]}"
        target = directory / name
        download_prefix(self._store, f"{self._prefix}/{name}", target)
        (target / COMPLETE_MARKER).unlink(missing_ok=True)
        return target

    def save(self, checkpoint: Path) -> None:
        """Upload ``checkpoint``, mark it complete, then drop the older ones."""
        prefix = f"{self._prefix}/{checkpoint.name}"
        upload_folder(self._store, checkpoint, prefix)
        self._store.put_bytes(f"{prefix}/{COMPLETE_MARKER}", b"", content_type="text/plain")
        for step in self._complete_steps():
            if f"checkpoint-{step}" != checkpoint.name:
                self._delete(f"{self._prefix}/checkpoint-{step}/")

    def clear(self) -> None:
        """Remove every checkpoint of this run (once its version is registered)."""
        self._delete(self._prefix + "/")

    def _delete(self, prefix: str) -> None:
        for info in list(self._store.list(prefix)):
            self._store.delete(info.key)


def _files(directory: Path) -> Iterator[Path]:
    return (path for path in sorted(directory.rglob("*")) if path.is_file())


def upload_folder(store: ObjectStore, directory: Path, prefix: str) -> list[dict[str, Any]]:
    """Put every file under ``directory`` at ``prefix/<relative path>``; returns what was stored."""
    stored = []
    for path in _files(directory):
        relative = path.relative_to(directory).as_posix()
        info = store.put_file(f"{prefix}/{relative}", path)
        stored.append({"path": relative, "size": info.size, "sha256": info.sha256})
    return stored


def download_prefix(store: ObjectStore, prefix: str, directory: Path) -> Path:
    """Copy every object under ``prefix/`` into ``directory`` (same relative layout); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for info in store.list(prefix.rstrip("/") + "/"):
        relative = info.key.removeprefix(prefix.rstrip("/") + "/")
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with store.open(info.key) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
    return directory


def stored_model(store: ObjectStore, plan: TrainingPlan) -> StoredModel | None:
    """The artifacts a previous run finished for this plan (its manifest is there), if any."""
    key = f"{plan.artifact_prefix}/{MANIFEST}"
    if not store.exists(key):
        return None
    manifest = json.loads(store.get_bytes(key))
    return StoredModel(
        artifact_uri=artifact_uri(store, plan),
        format=manifest["format"],
        metrics=manifest["metrics"],
        details=manifest.get("details", {}),
        files=len(manifest.get("files", [])),
        size_bytes=sum(int(item["size"]) for item in manifest.get("files", [])),
        adopted=True,
    )


class TrainerHooks(TypedDict, total=False):
    """Where the causal-LM trainer runs and what it reports to (its defaults apply; the tabular trainer
    takes none), passed on as they are by :func:`train_and_store` and :func:`build_trainer`."""

    device: Device | None
    callbacks: Sequence[TrainerCallback]
    log: Callable[[str], None] | None


def build_trainer(plan: TrainingPlan, store: ObjectStore, **hooks: Unpack[TrainerHooks]) -> ModelTrainer:
    """The trainer a plan names, with its parameters (checkpoints kept in the object store)."""
    hyper = {key: value for key, value in plan.params.items() if key not in _INPUT_KEYS}
    if plan.trainer == "tabular":
        from ods.trainers.tabular import TabularTrainer

        return TabularTrainer(TabularParams.model_validate(hyper), str(plan.params["target"]))
    from ods.trainers.causal_lm import CausalLmTrainer

    return CausalLmTrainer(
        CausalLmParams.model_validate(hyper),
        str(plan.params["base_model"]),
        checkpoints=ObjectStoreCheckpoints(store, plan.checkpoint_prefix),
        **hooks,
    )


_INPUT_KEYS = ("trainer", "target", "base_model", "base_model_fingerprint")


def lineage_of(plan: TrainingPlan) -> dict[str, Any]:
    """What a model version was made from, for cards and event payloads."""
    return {
        "dataset version": plan.dataset_ref,
        "dataset version id": plan.dataset_version_id,
        "dataset content sha256": plan.dataset_content_hash,
        "dataset uri": plan.dataset_uri,
        "code version": plan.code_version,
        "training key": plan.key,
    }


def train_and_store(plan: TrainingPlan, store: ObjectStore, **hooks: Unpack[TrainerHooks]) -> StoredModel:
    """Read the dataset version, train, and store the artifacts with their manifest written last.

    Artifacts a previous run already finished for this plan are adopted as they are.
    """
    existing = stored_model(store, plan)
    if existing is not None:
        return existing
    frame = read_dataset_frame(store, plan.dataset_uri)
    trainer = build_trainer(plan, store, **hooks)
    with tempfile.TemporaryDirectory(prefix="ods-train-") as scratch:
        trained = trainer.train(frame, Path(scratch) / "model")
        return _store_artifacts(store, plan, trained)


def _store_artifacts(store: ObjectStore, plan: TrainingPlan, trained: TrainedModel) -> StoredModel:
    uri = artifact_uri(store, plan)
    card = render_model_card(
        name=plan.model_name,
        version=None,
        trainer=plan.trainer,
        artifact_uri=uri,
        params=plan.params,
        metrics=trained.metrics,
        lineage=lineage_of(plan),
        details=trained.details,
    )
    (trained.directory / CARD).write_text(card, encoding="utf-8")
    (trained.directory / "metrics.json").write_text(json.dumps(trained.metrics, indent=2), encoding="utf-8")
    files = upload_folder(store, trained.directory, plan.artifact_prefix)
    manifest = {
        "model": plan.model_name,
        "trainer": plan.trainer,
        "format": trained.format,
        "training_key": plan.key,
        "dataset_version_id": plan.dataset_version_id,
        "params": plan.params,
        "metrics": trained.metrics,
        "details": trained.details,
        "code_version": plan.code_version,
        "files": files,
    }
    data = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8")
    store.put_bytes(f"{plan.artifact_prefix}/{MANIFEST}", data, content_type="application/json")
    return StoredModel(
        artifact_uri=uri,
        format=trained.format,
        metrics=trained.metrics,
        details=trained.details,
        files=len(files) + 1,
        size_bytes=sum(int(item["size"]) for item in files) + len(data),
    )


def register_trained_version(
    catalog: ModelCatalog,
    store: ObjectStore,
    plan: TrainingPlan,
    stored: StoredModel,
    *,
    flow_run_id: str | None,
) -> ModelVersionRecord:
    """Record the model version (once per request and per flow run), then drop its checkpoints."""
    record = find_trained_version(catalog, store, plan) or catalog.add_model_version(
        plan.model_name,
        trainer=plan.trainer,
        params=plan.params,
        metrics=stored.metrics,
        artifact_uri=stored.artifact_uri,
        dataset_version_id=plan.dataset_version_id,
        code_version=plan.code_version,
        flow_run_id=flow_run_id,
    )
    ObjectStoreCheckpoints(store, plan.checkpoint_prefix).clear()
    return record


class ModelVersionSummary(BaseModel):
    """A registered model version: the train-model flow's result and its ods.model.registered payload."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    version_id: int = Field(description="The version's catalog id.")
    trainer: str
    metrics: dict[str, Any] = Field(description="Held-out evaluation metrics, by name.")
    artifact_uri: str = Field(description="The object-store prefix of the version's artifacts.")
    dataset: str = Field(description="The dataset version trained on, as NAME@VERSION.")
    dataset_version_id: int | None
    code_version: str | None
    flow_run_id: str | None = Field(description="The flow run that registered the version.")
    training_key: str = Field(description="Key of the request (data, parameters, code) the version answers.")
    reused: bool = Field(description="True when an earlier run had registered it (nothing was trained).")


def model_summary(
    record: ModelVersionRecord, plan: TrainingPlan, *, reused: bool = False
) -> ModelVersionSummary:
    """What a person needs of a model version (flow result, event payload, CLI output)."""
    return copy_fields(
        ModelVersionSummary,
        record,
        model=record.model_name,
        version_id=record.id,
        dataset=plan.dataset_ref,
        training_key=plan.key,
        reused=reused,
    )


def render_version_card(record: ModelVersionRecord, plan: TrainingPlan, details: Mapping[str, Any]) -> str:
    """The model card of a registered version (the Prefect artifact; the stored one lacks the number)."""
    return render_model_card(
        name=record.model_name,
        version=record.version,
        trainer=record.trainer,
        artifact_uri=record.artifact_uri,
        params=record.params,
        metrics=record.metrics,
        lineage={**lineage_of(plan), "flow run": record.flow_run_id},
        details=details,
    )


def artifact_key(store: ObjectStore, record: ModelVersionRecord) -> str:
    """The object-store prefix of a version's artifacts (no trailing '/')."""
    if not record.artifact_uri.startswith(store.location):
        raise OdsError(
            f"model {record.model_name} v{record.version} is stored at {record.artifact_uri}, outside the "
            f"configured object store {store.location}"
        )
    return record.artifact_uri.removeprefix(store.location).rstrip("/")


def manifest_of(store: ObjectStore, record: ModelVersionRecord) -> dict[str, Any]:
    """The manifest stored with a version's artifacts (empty when it cannot be read)."""
    key = f"{artifact_key(store, record)}/{MANIFEST}"
    try:
        manifest: dict[str, Any] = json.loads(store.get_bytes(key))
    except (OdsError, ValueError):
        return {}
    return manifest
