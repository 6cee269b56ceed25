"""The automatic deploy gate: does a registered model version's metrics meet the bounds set for its model?

Pure: the gate-model flow reads the version from the catalog and the bounds from settings, and only a
version this says passes is announced as ``ods.model.approved`` (which starts deploy-model).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ods.domain.events import model_resource

DEPLOYABLE_TRAINERS = frozenset({"causal-lm-sft"})
"""Trainers whose versions deploy-model can serve (an OpenAI-compatible LLM server)."""

APPROVAL_NAMESPACE = uuid.UUID("0c7d3a52-2f4e-4f0e-8d7e-5a0b9e3f6c11")


@dataclass(frozen=True)
class GateDecision:
    """Whether a version may be deployed, and every reason it may not."""

    passed: bool
    reasons: tuple[str, ...] = field(default=())


class GateResult(BaseModel):
    """What gating a registered model version decided: the gate-model flow's result."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    model_ref: str = Field(description="The version as NAME@VERSION.")
    trainer: str
    approved: bool = Field(description="True when ods.model.approved was emitted (deploy-model starts).")
    reasons: list[str] = Field(description="Every reason the version is not deployed automatically.")


def evaluate_deploy_gate(
    model: str,
    trainer: str,
    metrics: Mapping[str, Any],
    minimum: Mapping[str, float] | None,
    maximum: Mapping[str, float] | None,
) -> GateDecision:
    """Check ``metrics`` against the gate's bounds; no gate (both None) means never deploy automatically.

    A bound on a metric the version lacks, or one that is not a finite number, fails the gate.
    """
    if minimum is None and maximum is None:
        return GateDecision(
            False, (f"no deploy gate is configured for model {model!r} (ODS_WATCH__DEPLOY_GATES)",)
        )
    reasons: list[str] = []
    if trainer not in DEPLOYABLE_TRAINERS:
        reasons.append(
            f"trainer {trainer!r} is not servable by deploy-model (only {sorted(DEPLOYABLE_TRAINERS)})"
        )
    for bound, limits in (("min", minimum or {}), ("max", maximum or {})):
        for metric, limit in sorted(limits.items()):
            value = metrics.get(metric)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                reasons.append(f"metric {metric!r} is missing or not a number (got {value!r})")
            elif bound == "min" and value < limit:
                reasons.append(f"{metric} = {value:g} is below the minimum {limit:g}")
            elif bound == "max" and value > limit:
                reasons.append(f"{metric} = {value:g} is above the maximum {limit:g}")
    return GateDecision(not reasons, tuple(reasons))


def approval_resource(model_name: str, backend: str) -> dict[str, str]:
    """The resource of a version's ``ods.model.approved`` event: the model, labelled with its backend."""
    return model_resource(model_name, backend=backend)


def approval_event_id(model_name: str, version: int, artifact_uri: str) -> uuid.UUID:
    """Deterministic id of a version's ``ods.model.approved`` event: re-gating it is the same event.

    Keyed by what identifies the version everywhere (name, number and its artifacts' URI, which holds the
    store and the training run key), not by a catalog row id: two catalogs reporting to one Prefect server
    (two developers, test homes) both number their first version 1, and Prefect skips an id it has seen.
    """
    return uuid.uuid5(APPROVAL_NAMESPACE, "\n".join(("approved", model_name, str(version), artifact_uri)))
