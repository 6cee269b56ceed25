"""What a training run is asked to do: the trainer, its validated hyper-parameters, and the run's identity.

Pure logic. The parameters arrive as a free-form mapping (a Prefect form, ``--param k=v`` on the command
line, a dataset spec's ``train:`` block); each trainer's model below turns them into typed values with
defaults, and rejects unknown keys by name so a typo is an error instead of a silently ignored setting.
The resolved parameters, the dataset version's content hash and the code version together name the run
(:func:`training_key`): the same request trains once and is found again afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ods.domain.hashing import stable_id
from ods.domain.names import name_problem
from ods.errors import OdsError

TrainerName: TypeAlias = Literal["tabular", "causal-lm-sft"]
TRAINER_NAMES: tuple[str, ...] = get_args(TrainerName)
TabularTask: TypeAlias = Literal["auto", "classification", "regression"]
FineTuneMethod: TypeAlias = Literal["lora", "full"]


class TrainingSpecError(OdsError):
    """A training request names an unknown trainer, or gives parameters the trainer cannot use."""


class _Params(BaseModel):
    """Frozen and strict about unknown keys, like the dataset spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TabularParams(_Params):
    """Hyper-parameters of the ``tabular`` trainer (scikit-learn HistGradientBoosting)."""

    task: TabularTask = Field(
        default="auto", description="classification or regression; auto decides from the target's type."
    )
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0, description="Share of rows held out for metrics.")
    seed: int = Field(default=42, ge=0, description="Seed of the split and of the booster.")
    learning_rate: float = Field(default=0.1, gt=0.0, le=1.0)
    max_iter: int = Field(default=200, ge=1, le=10_000, description="Boosting iterations.")
    max_leaf_nodes: int = Field(default=31, ge=2, le=1_024)
    max_depth: int | None = Field(default=None, ge=1)
    l2_regularization: float = Field(default=0.0, ge=0.0)
    early_stopping: bool | Literal["auto"] = Field(
        default="auto", description="Stop when a validation slice stops improving (auto: above 10,000 rows)."
    )
    max_categories: int = Field(
        default=50,
        ge=2,
        le=255,
        description="Text columns with more distinct values are treated as identifiers and left out.",
    )
    exclude: tuple[str, ...] = Field(default=(), description="Columns never used as features.")


class CausalLmParams(_Params):
    """Hyper-parameters of the ``causal-lm-sft`` trainer (transformers Trainer, optional LoRA via peft)."""

    method: FineTuneMethod = Field(default="lora", description="lora (adapter) or full fine-tuning.")
    merge_adapter: bool = Field(
        default=True,
        description="lora: save merged weights (a standalone model); false saves the adapter + base reference.",
    )
    prompt_column: str = "prompt"
    response_column: str = "response"
    messages_column: str = Field(
        default="messages", description="A column of chat messages, used when prompt/response are absent."
    )
    system_prompt: str | None = Field(default=None, description="Prepended to prompt/response pairs.")
    max_length: int = Field(default=512, ge=8, le=32_768, description="Tokens per example (truncated).")
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int = Field(default=-1, ge=-1, description="Optimizer steps; -1 runs `epochs` epochs.")
    learning_rate: float | None = Field(
        default=None, gt=0.0, description="Defaults to 2e-4 for lora and 2e-5 for full fine-tuning."
    )
    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    save_steps: int = Field(default=50, ge=1, description="Checkpoint (to the object store) every N steps.")
    test_size: float = Field(default=0.1, gt=0.0, lt=1.0, description="Share of rows held out for eval loss.")
    seed: int = Field(default=42, ge=0)
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    lora_target_modules: str | tuple[str, ...] = Field(
        default="all-linear", description="peft target_modules: 'all-linear' or module names."
    )
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _distinct_columns(self) -> CausalLmParams:
        if self.prompt_column == self.response_column:
            raise ValueError(f"prompt_column and response_column are both {self.prompt_column!r}")
        return self

    @property
    def effective_learning_rate(self) -> float:
        """The given learning rate, or the method's usual default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == "lora" else 2e-5


TrainerParams: TypeAlias = TabularParams | CausalLmParams
_PARAM_MODELS: dict[str, type[TabularParams] | type[CausalLmParams]] = {
    "tabular": TabularParams,
    "causal-lm-sft": CausalLmParams,
}


def check_trainer(trainer: str) -> TrainerName:
    """``trainer`` if it is a known trainer name, else a TrainingSpecError listing them."""
    if trainer not in TRAINER_NAMES:
        raise TrainingSpecError(f"unknown trainer {trainer!r}; use one of: {', '.join(TRAINER_NAMES)}")
    return trainer  # type: ignore[return-value]


def check_model_name(name: str) -> str:
    """``name`` if it can name a model (it becomes part of object keys and event resource ids); the rule
    is the one of :mod:`ods.domain.names`."""
    problem = name_problem("model", name)
    if problem is not None:
        raise TrainingSpecError(problem)
    return name


def parse_trainer_params(trainer: str, params: Mapping[str, Any] | None) -> TrainerParams:
    """Validate ``params`` for ``trainer``; every problem is named with the key and the value given."""
    model = _PARAM_MODELS[check_trainer(trainer)]
    try:
        return model.model_validate(dict(params or {}))
    except ValidationError as error:
        known = ", ".join(sorted(model.model_fields))
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(params)"
            if item["type"] == "extra_forbidden":
                problems.append(f"unknown parameter {key!r} (known: {known})")
            else:
                problems.append(f"{key}={item.get('input')!r}: {item['msg']}")
        raise TrainingSpecError(f"{trainer} parameters: " + "; ".join(problems)) from None


def parse_param_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """``["max_iter=50", "early_stopping=false", "exclude=[a, b]"]`` → typed values (YAML scalars).

    Values are read as JSON when they parse as JSON (numbers, booleans, lists), else kept as text, so
    ``lr=2e-5`` is a float and ``method=lora`` a string.
    """
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrainingSpecError(f"--param {assignment!r} is not KEY=VALUE, e.g. --param max_iter=100")
        if key in parsed:
            raise TrainingSpecError(f"--param {key} is given more than once")
        parsed[key] = _scalar(text.strip())
    return parsed


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.startswith("[") and text.endswith("]"):
        return [item.strip() for item in text[1:-1].split(",") if item.strip()]
    return text


def canonical_json(value: Any) -> str:
    """Sorted, compact JSON: equal values give equal text (the basis of identities)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def resolved_params(trainer: str, params: TrainerParams, **inputs: Any) -> dict[str, Any]:
    """Everything that decides what a run trains, as plain JSON: trainer, its inputs and every parameter.

    ``inputs`` are the trainer's non-hyper-parameter inputs (target column, base model), kept only when
    given so a tabular run does not record ``base_model: null``.
    """
    return {
        "trainer": trainer,
        **{name: value for name, value in sorted(inputs.items()) if value is not None},
        **params.model_dump(mode="json"),
    }


def training_key(
    *, model_name: str, dataset_content_hash: str, resolved: Mapping[str, Any], code_version: str | None
) -> str:
    """The identity of a training run: same model name, data, parameters and code → same key.

    Artifacts live at a key-derived prefix, so a retried or repeated run finds its own earlier output
    (finished artifacts, or checkpoints to resume from) instead of starting over.
    """
    return stable_id(
        model_name, dataset_content_hash, canonical_json(resolved), code_version or "", length=24
    )
