"""The ``causal-lm-sft`` trainer: supervised fine-tuning of a Hugging Face causal LM with transformers' Trainer.

Examples come from prompt/response columns or from a column of chat messages; they are rendered with the
tokenizer's chat template and the loss is taken on the answer tokens only. Full fine-tuning or LoRA (peft);
bf16 on a CUDA GPU, fp32 on CPU. Every checkpoint is handed to a :class:`CheckpointStore`, and a run that
finds one there resumes from it (``resume_from_checkpoint``) instead of starting over.

The output is a Hugging Face folder: merged weights (a standalone model) or, with ``merge_adapter: false``,
the LoRA adapter whose ``adapter_config.json`` names the base model. The base model must load offline from
a local directory: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ods.domain.training_spec import CausalLmParams
from ods.trainers.base import (
    BaseModelError,
    CheckpointStore,
    TrainedModel,
    TrainingDataError,
    describe_columns,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerCallback

FORMAT_MODEL = "hf-causal-lm"
FORMAT_ADAPTER = "hf-peft-adapter"
IGNORE_INDEX = -100
"""Label value the loss skips (prompt tokens and padding)."""

Message = dict[str, str]


@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision."""

    kind: Literal["cuda", "cpu"]
    dtype: Literal["bfloat16", "float32"]
    name: str

    def describe(self) -> str:
        """``'cuda (NVIDIA H200), bfloat16'``."""
        return f"{self.kind} ({self.name}), {self.dtype}"


def select_device() -> Device:
    """A CUDA GPU in bf16 when one is visible (fp32 if it lacks bf16), else the CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        dtype: Literal["bfloat16", "float32"] = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        return Device("cuda", dtype, torch.cuda.get_device_name(0))
    return Device("cpu", "float32", f"{torch.get_num_threads()} threads")


def check_base_model(base_model: str | None) -> Path:
    """The base model's local directory, after checking it holds a Hugging Face model (offline only)."""
    if not base_model:
        raise BaseModelError(
            "the causal-lm-sft trainer needs base_model: a local directory holding a Hugging Face model "
            "(config.json, weights, tokenizer)"
        )
    path = Path(base_model).expanduser()
    if not path.is_dir():
        raise BaseModelError(
            f"base model {base_model!r} is not a local directory; models load offline only, so pass the "
            "path of a Hugging Face model folder (config.json, weights, tokenizer) on the worker"
        )
    if not (path / "config.json").is_file():
        raise BaseModelError(
            f"base model directory {path} has no config.json; it is not a Hugging Face model folder"
        )
    return path.resolve()


def base_model_fingerprint(path: Path) -> str:
    """A cheap identity of a model folder: config.json's bytes plus every file's name and size."""
    from ods.domain.hashing import stable_id

    files = sorted(p for p in path.rglob("*") if p.is_file())
    parts: list[str | int] = [(path / "config.json").read_text(encoding="utf-8")]
    for file in files:
        parts += [str(file.relative_to(path)), file.stat().st_size]
    return stable_id(*parts, length=32)


def _as_messages(value: Any, row: int, column: str) -> list[Message]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise TrainingDataError(
                f"row {row}: column {column!r} holds text that is not a JSON list of messages"
            ) from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise TrainingDataError(
            f"row {row}: column {column!r} must hold a list of {{role, content}} messages, got {type(value).__name__}"
        )
    messages: list[Message] = []
    for item in value:
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise TrainingDataError(f"row {row}: every message in {column!r} needs 'role' and 'content'")
        messages.append({"role": str(item["role"]), "content": str(item["content"])})
    if messages[-1]["role"] != "assistant":
        raise TrainingDataError(
            f"row {row}: the last message in {column!r} is from {messages[-1]['role']!r}; "
            "it must be the assistant's answer the model learns"
        )
    return messages


def conversations_from_frame(frame: pd.DataFrame, params: CausalLmParams) -> list[list[Message]]:
    """One conversation per usable row: prompt/response columns, else the chat-messages column.

    Rows with an empty prompt or response are skipped; a frame with neither layout is an error that
    names the columns it does have.
    """
    if params.prompt_column in frame.columns and params.response_column in frame.columns:
        conversations = []
        for prompt, response in zip(frame[params.prompt_column], frame[params.response_column], strict=True):
            if pd.isna(prompt) or pd.isna(response) or not str(prompt).strip() or not str(response).strip():
                continue
            messages = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
            messages += [
                {"role": "user", "content": str(prompt)},
                {"role": "assistant", "content": str(response)},
            ]
            conversations.append(messages)
        return conversations
    if params.messages_column in frame.columns:
        return [
            _as_messages(value, row, params.messages_column)
            for row, value in enumerate(frame[params.messages_column])
            if value is not None and not (isinstance(value, float) and math.isnan(value))
        ]
    raise TrainingDataError(
        f"the causal-lm-sft trainer needs text columns {params.prompt_column!r} and {params.response_column!r} "
        f"or a chat column {params.messages_column!r} (rename them with the prompt_column, response_column or "
        f"messages_column parameters); the dataset's columns are: {describe_columns(frame)}"
    )


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], max_length: int
) -> dict[str, list[int]] | None:
    """Token ids and labels for one conversation; labels cover only the final answer.

    Uses the tokenizer's chat template when it has one, else ``prompt\\nanswer<eos>``. Returns ``None``
    when truncation to ``max_length`` leaves no answer token to learn from.
    """
    if tokenizer.chat_template:
        prompt_text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    else:
        prompt_text = "\n".join(message["content"] for message in messages[:-1]) + "\n"
        full_text = prompt_text + messages[-1]["content"] + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(str(prompt_text), add_special_tokens=False)["input_ids"]
    input_ids = tokenizer(str(full_text), add_special_tokens=False)["input_ids"][:max_length]
    labels = [IGNORE_INDEX] * min(len(prompt_ids), len(input_ids)) + input_ids[len(prompt_ids) :]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


class _PaddingCollator:
    """Pads a batch to its longest example: pad id for inputs, 0 for the mask, IGNORE_INDEX for labels."""

    def __init__(self, pad_token_id: int) -> None:
        self._pad = pad_token_id

    def __call__(self, examples: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(example["input_ids"]) for example in examples)
        batch: dict[str, Any] = {}
        for field, fill in (("input_ids", self._pad), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
            rows = [example[field] + [fill] * (width - len(example[field])) for example in examples]
            batch[field] = torch.tensor(rows, dtype=torch.long)
        return batch


def split_examples(
    examples: list[dict[str, list[int]]], test_size: float, seed: int
) -> tuple[list[dict[str, list[int]]], list[dict[str, list[int]]]]:
    """A seeded shuffle split: at least one held-out example and one training example."""
    if len(examples) < 2:
        raise TrainingDataError(
            f"only {len(examples)} usable example(s); fine-tuning needs at least 2 (one is held out)"
        )
    order = np.random.default_rng(seed).permutation(len(examples))
    held_out = min(len(examples) - 1, max(1, round(len(examples) * test_size)))
    return [examples[i] for i in order[held_out:]], [examples[i] for i in order[:held_out]]


def _checkpointing_option(enabled: bool) -> dict[str, Any]:
    """Activation (gradient) checkpointing, under the argument name this transformers version uses."""
    if not enabled:
        return {}
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {item.name for item in fields(TrainingArguments)}
    return {
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": True
    }


def _store_callback(checkpoints: CheckpointStore) -> TrainerCallback:
    from transformers import TrainerCallback

    class CheckpointToStore(TrainerCallback):
        """Hands each checkpoint the Trainer writes to the checkpoint store."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.is_world_process_zero:
                checkpoints.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            return control

    return CheckpointToStore()


def _log_callback(log: Callable[[str], None]) -> TrainerCallback:
    from transformers import TrainerCallback

    class LogProgress(TrainerCallback):
        """Reports the Trainer's loss lines through ``log`` instead of printing them."""

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> Any:
            if state.is_world_process_zero and logs and "loss" in logs:
                log(f"step {state.global_step}/{state.max_steps}: loss {float(logs['loss']):.4f}")
            return control

    return LogProgress()


class CausalLmTrainer:
    """Supervised fine-tuning of a local Hugging Face causal LM."""

    name = "causal-lm-sft"

    def __init__(
        self,
        params: CausalLmParams,
        base_model: str,
        *,
        checkpoints: CheckpointStore | None = None,
        device: Device | None = None,
        callbacks: Sequence[TrainerCallback] = (),
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._params = params
        self._log = log or (lambda _line: None)
        self._base = check_base_model(base_model)
        self._checkpoints = checkpoints
        self._device = device
        self._callbacks = list(callbacks)

    def _load(self, device: Device) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self._base, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                self._base, local_files_only=True, dtype=getattr(torch, device.dtype)
            )
        except (OSError, ValueError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BaseModelError(
                f"cannot load base model {self._base} offline: {first_line}; pass a folder written by "
                "save_pretrained (config.json, weights, tokenizer)"
            ) from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer, model

    def _with_lora(self, model: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        targets = self._params.lora_target_modules
        config = LoraConfig(
            r=self._params.lora_r,
            lora_alpha=self._params.lora_alpha,
            lora_dropout=self._params.lora_dropout,
            target_modules=targets if isinstance(targets, str) else list(targets),
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, config)

    def _arguments(self, output_dir: Path, device: Device) -> Any:
        from transformers import TrainingArguments

        params = self._params
        return TrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=params.batch_size,
            per_device_eval_batch_size=params.batch_size,
            gradient_accumulation_steps=params.gradient_accumulation_steps,
            learning_rate=params.effective_learning_rate,
            num_train_epochs=params.epochs,
            max_steps=params.max_steps,
            warmup_steps=params.warmup_ratio,
            weight_decay=params.weight_decay,
            lr_scheduler_type="linear",
            save_strategy="steps",
            save_steps=params.save_steps,
            save_total_limit=1,
            eval_strategy="no",
            logging_steps=max(1, params.save_steps // 5),
            report_to=[],
            disable_tqdm=True,
            seed=params.seed,
            data_seed=params.seed,
            use_cpu=device.kind == "cpu",
            bf16=device.dtype == "bfloat16",
            dataloader_num_workers=0,
            remove_unused_columns=False,
            **_checkpointing_option(params.gradient_checkpointing),
        )

    def train(self, frame: pd.DataFrame, output_dir: Path) -> TrainedModel:
        """Fine-tune on a seeded split, report held-out loss and perplexity, save a Hugging Face folder."""
        from transformers import PrinterCallback, Trainer, set_seed

        params = self._params
        device = self._device or select_device()
        self._log(f"training on {device.describe()}")
        conversations = conversations_from_frame(frame, params)
        set_seed(params.seed)  # before the LoRA matrices are drawn, so a run (and its resumption) repeats
        tokenizer, model = self._load(device)
        examples = [
            example
            for conversation in conversations
            if (example := tokenize_conversation(tokenizer, conversation, params.max_length)) is not None
        ]
        train_set, eval_set = split_examples(examples, params.test_size, params.seed)
        if params.method == "lora":
            model = self._with_lora(model)
        work_dir = output_dir.parent / f"{output_dir.name}-checkpoints"
        resume = self._checkpoints.restore_latest(work_dir) if self._checkpoints else None
        trainer = Trainer(
            model=model,
            args=self._arguments(work_dir, device),
            train_dataset=train_set,
            data_collator=_PaddingCollator(int(tokenizer.pad_token_id)),
            callbacks=[
                _log_callback(self._log),
                *([_store_callback(self._checkpoints)] if self._checkpoints else []),
                *self._callbacks,
            ],
        )
        trainer.remove_callback(PrinterCallback)
        if resume is not None:
            self._log(f"resuming from {resume.name}")
        started = time.monotonic()
        outcome = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        train_seconds = time.monotonic() - started
        evaluation = trainer.evaluate(eval_dataset=eval_set)  # type: ignore[arg-type]
        eval_loss = float(evaluation["eval_loss"])
        model_format = self._save(trainer.model, tokenizer, output_dir)
        return TrainedModel(
            directory=output_dir,
            format=model_format,
            metrics={
                "eval_loss": eval_loss,
                "perplexity": math.exp(min(eval_loss, 50.0)),
                "train_loss": float(outcome.training_loss),
                "train_examples": len(train_set),
                "eval_examples": len(eval_set),
                "steps": int(outcome.global_step),
            },
            details={
                "device": device.describe(),
                "base model": str(self._base),
                "method": params.method
                + (" (merged)" if model_format == FORMAT_MODEL and params.method == "lora" else ""),
                "resumed from step": _step_of(resume),
                "skipped examples": len(conversations) - len(examples) or None,
                "train seconds": round(train_seconds, 2),
            },
        )

    def _save(self, model: Any, tokenizer: Any, output_dir: Path) -> str:
        model_format = FORMAT_MODEL
        if self._params.method == "lora":
            if self._params.merge_adapter:
                model = model.merge_and_unload()
            else:
                model_format = FORMAT_ADAPTER
        model.config.use_cache = True
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        if model_format == FORMAT_ADAPTER:
            (output_dir / "ods_base_model.json").write_text(
                json.dumps({"base_model": str(self._base)}, indent=2), encoding="utf-8"
            )
        return model_format


def _step_of(checkpoint: Path | None) -> int | None:
    if checkpoint is None:
        return None
    return int(checkpoint.name.rpartition("-")[2])
