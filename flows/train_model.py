"""`train_model`: registered dataset version → trained, evaluated, registered model version.

The same request (dataset version, trainer, parameters, code) returns the version already registered;
a retried run resumes from its stored checkpoints and never registers twice.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from prefect import flow

from ods.domain.names import ModelName
from ods.stages.train import ModelVersionSummary
from tasks.presets import FLOW_RESULTS
from tasks.train import (
    find_trained_model,
    plan_model_training,
    register_model_version,
    reuse_trained_model,
    train_and_store_model,
)


@flow(name="train-model", flow_run_name="train-{trainer}-{dataset}", **FLOW_RESULTS)
def train_model(
    dataset: str,
    trainer: Literal["tabular", "causal-lm-sft"] = "tabular",
    target: str | None = None,
    base_model: str | None = None,
    params: dict[str, Any] | None = None,
    model_name: ModelName | None = None,
) -> ModelVersionSummary:
    """Train a model on a registered dataset version and register it with lineage and metrics.

    Args:
        dataset: NAME or NAME@VERSION of a registered dataset version (NAME alone: the newest registered).
        trainer: tabular (scikit-learn gradient boosting) or causal-lm-sft (fine-tune a Hugging Face causal LM).
        target: tabular: the column to predict (classification or regression follows its type).
        base_model: causal-lm-sft: local directory of the Hugging Face model to fine-tune (loaded offline).
        params: trainer hyper-parameters, e.g. {"max_iter": 100} or {"method": "lora", "max_steps": 200}.
        model_name: name of the model to register a version of (1-63 lower-case letters, digits, '_' or
            '-', starting with a letter); defaults to the dataset name.
    """
    plan = plan_model_training(dataset, trainer, target, base_model, params, model_name)
    existing = find_trained_model(plan)
    if existing is not None:
        return reuse_trained_model(plan, existing)
    stored = train_and_store_model(plan)
    return register_model_version(plan, stored)


if __name__ == "__main__":
    import sys

    train_model(*cast("list[Any]", sys.argv[1:3]))  # DATASET [TRAINER]: the flow validates the trainer
