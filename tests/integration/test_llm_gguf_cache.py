"""The packaged SmolLM2 GGUF kept converted: the same model, loaded by later processes from the cache.

Reading the GGUF costs ~15 s a process; the converted folder ~0.5 s (ods.adapters.models.gguf_cache).
These tests check that what is written is the same model (weights bit for bit, tokenizer, chat
template, greedy answer), that the setting reaches a new process, and that a cache which cannot be
written or read only costs speed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ods.adapters.models.gguf_cache import WEIGHTS, converted_dir, load_converted, store_converted
from ods.adapters.models.llm import TransformersLLM
from ods.adapters.models.packaged import smollm2_gguf_path
from ods.domain.chat import ChatMessage

QUESTION = [
    ChatMessage(
        "system", "Answer in one sentence using only this context. Context: The Eiffel Tower is 330 m."
    ),
    ChatMessage("user", "How tall is the Eiffel Tower?"),
]


@pytest.fixture(scope="module")
def smollm2() -> TransformersLLM:
    llm = TransformersLLM()
    _ = llm.loaded
    return llm


@pytest.fixture(scope="module")
def converted(smollm2: TransformersLLM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = converted_dir(smollm2_gguf_path(), tmp_path_factory.mktemp("llm-cache"))
    store_converted(smollm2.loaded.model, smollm2.loaded.tokenizer, folder)
    return folder


def test_the_converted_folder_holds_the_same_weights_tokenizer_and_answers(
    smollm2: TransformersLLM, converted: Path
) -> None:
    loaded = load_converted(converted)
    assert loaded is not None
    model, tokenizer = loaded

    expected = smollm2.loaded.model.state_dict()
    assert set(model.state_dict()) == set(expected)
    assert all(torch.equal(tensor, expected[name]) for name, tensor in model.state_dict().items())
    assert tokenizer.chat_template == smollm2.loaded.tokenizer.chat_template
    from_folder = TransformersLLM(converted)
    assert from_folder.count_tokens(QUESTION) == smollm2.count_tokens(QUESTION)
    assert (
        from_folder.complete(QUESTION, max_tokens=24).text == smollm2.complete(QUESTION, max_tokens=24).text
    )
    assert not list(converted.parent.glob("*.partial")), "no half-written folder is left behind"
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in converted.iterdir()), "readable by others"


def test_converting_again_into_a_folder_another_process_filled_keeps_it(
    smollm2: TransformersLLM, converted: Path
) -> None:
    weights = (converted / WEIGHTS).stat()

    store_converted(smollm2.loaded.model, smollm2.loaded.tokenizer, converted)

    assert (converted / WEIGHTS).stat().st_ino == weights.st_ino
    assert not list(converted.parent.glob("*.partial"))


def test_a_new_process_loads_the_model_from_the_cache_the_setting_names(converted: Path) -> None:
    script = (
        "from ods.factories import build_llm\n"
        "from ods.settings import load_settings\n"
        "print(build_llm(load_settings().llm).loaded.model.name_or_path)\n"
    )
    environment = {**os.environ, "ODS_LLM__GGUF_CACHE": str(converted.parent)}

    finished = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=False
    )

    assert finished.returncode == 0, finished.stderr[-2000:]
    assert Path(finished.stdout.strip().splitlines()[-1]) == converted


def test_a_cache_that_cannot_be_written_is_an_os_error_that_leaves_nothing(
    smollm2: TransformersLLM, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be", encoding="utf-8")

    with pytest.raises(OSError):
        store_converted(smollm2.loaded.model, smollm2.loaded.tokenizer, not_a_folder / "model")

    assert not_a_folder.read_text(encoding="utf-8").startswith("a file")


def test_a_damaged_converted_folder_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / WEIGHTS).write_bytes(b"not safetensors")

    with caplog.at_level(logging.WARNING, logger="ods.adapters.models.gguf_cache"):
        assert load_converted(folder) is None
    assert load_converted(tmp_path / "absent") is None

    assert str(folder) in caplog.text
    assert "reading the GGUF instead" in caplog.text


def test_the_folder_changes_with_the_gguf_file(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"one")
    first = converted_dir(gguf, tmp_path / "cache")
    gguf.write_bytes(b"other")
    os.utime(gguf, ns=(1, 1))

    assert converted_dir(gguf, tmp_path / "cache") != first
    assert first.parent == tmp_path / "cache"
    assert first.name.startswith("model-")
