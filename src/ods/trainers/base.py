"""What every trainer is: a frame and an output folder in, model files and held-out metrics out.

Trainers know nothing about the catalog, the object store or Prefect: the training stages
(``ods.stages.train``) read the dataset version, hand its frame to a trainer, and upload the folder it fills.
The one place a trainer touches storage is through a :class:`CheckpointStore`, so a long run that is
interrupted can resume from its last checkpoint wherever that checkpoint is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ods.errors import OdsError


class TrainingDataError(OdsError):
    """The dataset version does not fit the trainer (missing target or text columns, too few rows)."""


class BaseModelError(OdsError):
    """The base model cannot be loaded offline from the place given."""


@dataclass(frozen=True)
class TrainedModel:
    """A trained model's files in ``directory``, its held-out metrics and what a person needs to know."""

    directory: Path
    format: str
    metrics: dict[str, float | int]
    details: dict[str, Any] = field(default_factory=dict)


class CheckpointStore(Protocol):
    """Where an interrupted run's checkpoints survive the process (the object store, in production)."""

    def restore_latest(self, directory: Path) -> Path | None:
        """Copy the newest complete checkpoint into ``directory`` and return its folder, if there is one."""
        ...

    def save(self, checkpoint: Path) -> None:
        """Keep the checkpoint folder ``checkpoint`` (named ``checkpoint-<step>``), replacing older ones."""
        ...


class ModelTrainer(Protocol):
    """Trains one model from a frame into ``output_dir``."""

    @property
    def name(self) -> str:
        """The trainer's name as recorded in the catalog (``tabular``, ``causal-lm-sft``)."""
        ...

    def train(self, frame: pd.DataFrame, output_dir: Path) -> TrainedModel:
        """Fit on a seeded split of ``frame``, evaluate on the held-out rows, write the model files."""
        ...


def describe_columns(frame: pd.DataFrame) -> str:
    """``'a, b, c'``: the columns a frame has, for errors about a column it lacks."""
    return ", ".join(map(str, frame.columns)) or "(none)"
