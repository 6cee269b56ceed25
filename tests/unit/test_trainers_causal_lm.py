"""The causal-LM SFT trainer on a tiny random Llama: examples, labels, offline loading, output, resumption."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ods.domain.training_spec import CausalLmParams
from ods.trainers.base import BaseModelError, TrainingDataError
from ods.trainers.causal_lm import (
    IGNORE_INDEX,
    CausalLmTrainer,
    Device,
    check_base_model,
    conversations_from_frame,
    tokenize_conversation,
)
from tests.support.tiny_llm import Interrupted, stop_after_checkpoint, tiny_model_dir

CPU = Device("cpu", "float32", "test")
TINY_RUN = {"max_steps": 4, "save_steps": 2, "batch_size": 4, "max_length": 64, "lora_dropout": 0.0}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def _pairs(rows: int = 16) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": [f"What is {i} plus {i}?" for i in range(rows)],
            "response": [str(2 * i) for i in range(rows)],
        }
    )


class FolderCheckpoints:
    """A checkpoint store in a local folder (the flow uses the object store)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.saved: list[str] = []

    def restore_latest(self, directory: Path) -> Path | None:
        found = sorted(self.root.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
        if not found:
            return None
        return Path(shutil.copytree(found[-1], directory / found[-1].name))

    def save(self, checkpoint: Path) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(checkpoint, self.root / checkpoint.name)
        self.saved.append(checkpoint.name)


def test_prompt_response_rows_become_conversations() -> None:
    frame = pd.DataFrame({"prompt": ["Hi", None, "Bye"], "response": ["Hello", "x", "See you"]})

    conversations = conversations_from_frame(frame, CausalLmParams(system_prompt="Be brief."))

    assert conversations == [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "See you"},
        ],
    ]


def test_a_messages_column_is_read_from_lists_or_json_text() -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    frame = pd.DataFrame({"messages": [messages, json.dumps(messages)]})

    assert conversations_from_frame(frame, CausalLmParams()) == [messages, messages]
    with pytest.raises(TrainingDataError, match="last message in 'messages' is from 'user'"):
        conversations_from_frame(pd.DataFrame({"messages": [messages[:1]]}), CausalLmParams())


def test_missing_text_columns_name_the_columns_that_exist() -> None:
    with pytest.raises(TrainingDataError) as raised:
        conversations_from_frame(pd.DataFrame({"question": ["a"], "answer": ["b"]}), CausalLmParams())

    assert "needs text columns 'prompt' and 'response' or a chat column 'messages'" in str(raised.value)
    assert str(raised.value).endswith("the dataset's columns are: question, answer")


def test_only_answer_tokens_are_labelled(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    messages = [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4"}]

    example = tokenize_conversation(tokenizer, messages, max_length=256)

    assert example is not None
    labelled = [
        token
        for token, label in zip(example["input_ids"], example["labels"], strict=True)
        if label != IGNORE_INDEX
    ]
    assert tokenizer.decode(labelled).startswith("4")
    assert example["labels"][0] == IGNORE_INDEX
    assert tokenize_conversation(tokenizer, messages, max_length=5) is None


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (lambda root: root / "absent", "is not a local directory"),
        (lambda root: root, "has no config.json"),
    ],
    ids=["missing", "not-a-model"],
)
def test_a_base_model_that_cannot_load_offline_is_refused(
    tmp_path: Path, prepare: Any, expected: str
) -> None:
    with pytest.raises(BaseModelError, match=expected):
        check_base_model(str(prepare(tmp_path)))


def test_a_broken_model_folder_fails_with_the_loaders_reason(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')

    with pytest.raises(BaseModelError, match=f"cannot load base model {tmp_path} offline"):
        CausalLmTrainer(CausalLmParams(**TINY_RUN), str(tmp_path), device=CPU).train(
            _pairs(), tmp_path / "out"
        )


def test_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(
    tiny_model: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    params = CausalLmParams(method="full", **TINY_RUN)
    straight = CausalLmTrainer(params, str(tiny_model), device=CPU).train(_pairs(), tmp_path / "straight")
    store = FolderCheckpoints(tmp_path / "store")
    with pytest.raises(Interrupted):
        CausalLmTrainer(
            params, str(tiny_model), checkpoints=store, device=CPU, callbacks=[stop_after_checkpoint(2)]
        ).train(_pairs(), tmp_path / "first")
    log: list[str] = []

    resumed = CausalLmTrainer(params, str(tiny_model), checkpoints=store, device=CPU, log=log.append).train(
        _pairs(), tmp_path / "resumed"
    )

    assert store.saved == ["checkpoint-2", "checkpoint-4"]
    assert resumed.details["resumed from step"] == 2
    assert "resuming from checkpoint-2" in log
    assert [line.split(":")[0] for line in log if line.startswith("step")] == ["step 3/4", "step 4/4"]
    assert resumed.metrics["steps"] == straight.metrics["steps"] == 4
    assert resumed.metrics["eval_loss"] == straight.metrics["eval_loss"]
    first = load_file(str(tmp_path / "straight" / "model.safetensors"))
    second = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(bool((first[name] == second[name]).all()) for name in first)


def test_lora_adapter_is_saved_with_its_base_reference(tiny_model: Path, tmp_path: Path) -> None:
    from peft import AutoPeftModelForCausalLM

    trained = CausalLmTrainer(
        CausalLmParams(method="lora", merge_adapter=False, **TINY_RUN), str(tiny_model), device=CPU
    ).train(_pairs(), tmp_path / "adapter")

    assert trained.format == "hf-peft-adapter"
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model)
    assert json.loads((tmp_path / "adapter" / "ods_base_model.json").read_text()) == {
        "base_model": str(tiny_model)
    }
    model = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    assert model.active_adapter == "default"
