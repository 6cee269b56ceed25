"""A tiny chat model for tests: a Llama-style network with random weights and SmolLM2's real tokenizer.

The weights are random (so the text it writes is gibberish), but the folder is a complete Hugging Face
model — config, safetensors, tokenizer, chat template, generation config — so anything that serves,
trains or loads HF-format models works on it in seconds: ``transformers serve``, ``from_pretrained``,
``Trainer``. The tokenizer is read from the packaged SmolLM2 GGUF, so token counts are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ods.adapters.models.packaged import smollm2_gguf_path

SEED = 1234
HIDDEN_SIZE = 64
LAYERS = 2
ATTENTION_HEADS = 4
KEY_VALUE_HEADS = 2
INTERMEDIATE_SIZE = 128
MAX_POSITIONS = 2048
# Wider than the usual 0.02: with tiny random weights that small, greedy decoding repeats one token
# forever; at 0.2 it writes varied (meaningless) words, so streaming and token counts are exercised.
INITIALIZER_RANGE = 0.2


def build_tiny_causal_lm(directory: Path) -> Path:
    """Write the tiny model into ``directory`` (created if needed) and return it.

    Same seed, same weights: two calls give identical models, so tests can compare outputs across them.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise RuntimeError(f"the tokenizer read from {gguf} carries no chat template")

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=LAYERS,
        num_attention_heads=ATTENTION_HEADS,
        num_key_value_heads=KEY_VALUE_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        initializer_range=INITIALIZER_RANGE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_model_dir(factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built once per test session (every module asking gets the same folder)."""
    directory = factory.getbasetemp() / "tiny-causal-lm"
    if not (directory / "config.json").is_file():
        build_tiny_causal_lm(directory)
    return directory


class Interrupted(Exception):
    pass


def stop_after_checkpoint(step: int) -> Any:
    """A Trainer callback that kills the run right after checkpoint ``step`` was handed to the store."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= step:
                raise Interrupted(f"stopped after step {state.global_step}")
            return control

    return StopAfter()
