"""Tasks of the train_model flow: thin wrappers adding retries, logging, artifacts and events.

Tasks pass a :class:`~ods.stages.train.TrainingPlan` (references and parameters) between them, never frames
or weights: the training task reads the dataset's Parquet itself and leaves the model in the object store.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from ods.adapters.catalog.records import ModelVersionRecord
from ods.domain.events import MODEL_REGISTERED, dataset_related, model_resource
from ods.factories import build_object_store, open_catalog
from ods.settings import get_settings
from ods.stages.train import (
    ModelVersionSummary,
    StoredModel,
    TrainingPlan,
    code_version,
    find_trained_version,
    model_summary,
    plan_training,
    register_trained_version,
    render_version_card,
    train_and_store,
)
from tasks.presets import NOT_PERSISTED, RETRY_ONCE_TO_RESUME, RETRY_TRANSIENT_IO, model_card_key


@task(name="plan-training", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def plan_model_training(
    dataset: str,
    trainer: str,
    target: str | None,
    base_model: str | None,
    params: dict[str, Any] | None,
    model_name: str | None,
) -> TrainingPlan:
    """Validate the request and resolve the dataset version (no data is read yet)."""
    with open_catalog(get_settings()) as catalog:
        plan = plan_training(
            catalog,
            dataset=dataset,
            trainer=trainer,
            target=target,
            base_model=base_model,
            params=params,
            model_name=model_name,
            code=code_version(),
        )
    get_run_logger().info(
        "training %s on %s with %s (key %s, code %s)",
        plan.model_name,
        plan.dataset_ref,
        plan.trainer,
        plan.key,
        plan.code_version,
    )
    return plan


@task(name="find-trained-version", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def find_trained_model(plan: TrainingPlan) -> ModelVersionRecord | None:
    """The version an earlier run registered for exactly this request (the idempotent fast path)."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        return find_trained_version(catalog, build_object_store(settings), plan)


@task(name="reuse-version", **NOT_PERSISTED)
def reuse_trained_model(plan: TrainingPlan, existing: ModelVersionRecord) -> ModelVersionSummary:
    """Return the version an earlier run registered for the same data, parameters and code."""
    get_run_logger().info(
        "%s v%d was already trained on %s with these parameters and code: nothing to do "
        "(change a parameter such as seed to train a new version)",
        existing.model_name,
        existing.version,
        plan.dataset_ref,
    )
    return model_summary(existing, plan, reused=True)


@task(name="train-and-store", **RETRY_ONCE_TO_RESUME, **NOT_PERSISTED)
def train_and_store_model(plan: TrainingPlan) -> StoredModel:
    """Read the dataset's Parquet, train, evaluate on the held-out split, store artifacts + manifest."""
    logger = get_run_logger()
    stored = train_and_store(plan, build_object_store(get_settings()), log=logger.info)
    if stored.adopted:
        logger.info("adopted finished artifacts at %s (a previous run stored them)", stored.artifact_uri)
    else:
        logger.info("stored %d files (%d bytes) at %s", stored.files, stored.size_bytes, stored.artifact_uri)
    logger.info("held-out metrics: %s", ", ".join(f"{k}={v:.4g}" for k, v in stored.metrics.items()))
    return stored


@task(name="register-version", **RETRY_TRANSIENT_IO, **NOT_PERSISTED)
def register_model_version(plan: TrainingPlan, stored: StoredModel) -> ModelVersionSummary:
    """Record the model version, publish its card and emit ods.model.registered."""
    settings = get_settings()
    with open_catalog(settings) as catalog:
        record = register_trained_version(
            catalog, build_object_store(settings), plan, stored, flow_run_id=flow_run.id
        )
    create_markdown_artifact(
        key=model_card_key(record.model_name),
        markdown=render_version_card(record, plan, stored.details),
        description="Model card",
    )
    summary = model_summary(record, plan)
    emit_event(
        event=MODEL_REGISTERED,
        resource=model_resource(record.model_name),
        related=[dataset_related(plan.dataset_name, plan.dataset_ref)],
        payload=summary.model_dump(mode="json"),
    )
    get_run_logger().info("registered %s v%d at %s", record.model_name, record.version, record.artifact_uri)
    return summary
