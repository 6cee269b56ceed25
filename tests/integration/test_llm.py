"""LLM adapters against real models: the packaged SmolLM2 in-process, and a real `transformers serve`.

The served model is the tiny random-weight Llama of tests/support/tiny_llm.py (SmolLM2's real tokenizer
and chat template), so the server starts in seconds; its text is gibberish but its tokens are real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ods.adapters.models.llm import (
    LLMError,
    OpenAIChatLLM,
    TransformersLLM,
    UnknownModelError,
    cached_causal_lms,
    load_causal_lm,
)
from ods.adapters.models.packaged import smollm2_gguf_path
from ods.domain.chat import ChatMessage
from ods.factories import build_llm
from ods.settings import LLMSettings
from tests.support.tiny_llm import build_tiny_causal_lm

GROUNDED = [
    ChatMessage(
        "system",
        "Answer in one sentence using only this context. Context: The Eiffel Tower is 330 metres tall "
        "and stands in Paris.",
    ),
    ChatMessage("user", "How tall is the Eiffel Tower?"),
]
SERVER_READY_WAIT_S = 120.0
LOG_TAIL_CHARS = 3000


# --- the packaged SmolLM2, in-process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> TransformersLLM:
    llm = TransformersLLM()
    _ = llm.loaded  # load once for the whole module
    return llm


def test_smollm2_answers_a_grounded_question_and_counts_its_tokens(smollm2: TransformersLLM) -> None:
    completion = smollm2.complete(GROUNDED, max_tokens=40)

    assert "330" in completion.text
    assert completion.model == "SmolLM2-135M-Instruct"
    assert completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == smollm2.count_tokens(GROUNDED) > 20
    assert 0 < completion.usage.completion_tokens <= 40
    assert completion.seconds > 0


def test_smollm2_streams_deltas_that_concatenate_to_the_same_greedy_answer(smollm2: TransformersLLM) -> None:
    deltas: list[str] = []

    streamed = smollm2.complete(GROUNDED, max_tokens=40, on_text=deltas.append)
    plain = smollm2.complete(GROUNDED, max_tokens=40)

    assert len(deltas) > 1
    assert "".join(deltas) == streamed.text
    assert streamed.text == plain.text  # greedy decoding: streaming changes nothing
    assert streamed.usage == plain.usage


def test_smollm2_is_loaded_once_per_process_and_shared(smollm2: TransformersLLM) -> None:
    second = TransformersLLM()
    from_settings = build_llm(LLMSettings())
    assert isinstance(from_settings, TransformersLLM)

    second.complete([ChatMessage("user", "Hi")], max_tokens=2)

    assert second.loaded is smollm2.loaded
    assert from_settings.loaded is smollm2.loaded
    gguf = smollm2_gguf_path()
    key = (str(gguf.parent.resolve()), gguf.name)
    assert cached_causal_lms().count(key) == 1
    assert load_causal_lm(gguf.parent, gguf.name).model is smollm2.loaded.model


# --- the tiny model, in-process: edge cases that need many tokens are cheap on it --------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llm") / "tiny-chat")


def test_generation_stops_at_max_tokens_with_finish_reason_length(tiny_model_dir: Path) -> None:
    llm = TransformersLLM(tiny_model_dir)

    completion = llm.complete([ChatMessage("user", "Say something")], max_tokens=7)

    assert llm.model_id == "tiny-chat"
    assert completion.usage.completion_tokens == 7
    assert completion.finish_reason == "length"
    assert completion.text


def test_concurrent_callers_take_turns_and_get_the_same_answer(tiny_model_dir: Path) -> None:
    llm = TransformersLLM(tiny_model_dir)
    question = [ChatMessage("user", "Tell me about rivers")]
    texts: list[str] = []

    def ask() -> None:
        texts.append(llm.complete(question, max_tokens=12).text)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(texts) == 3
    assert len(set(texts)) == 1


def test_a_failing_stream_consumer_stops_generation_and_sees_its_error(tiny_model_dir: Path) -> None:
    llm = TransformersLLM(tiny_model_dir)
    received: list[str] = []

    def consume(delta: str) -> None:
        received.append(delta)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        llm.complete([ChatMessage("user", "Go on")], max_tokens=200, on_text=consume)

    assert len(received) == 1
    # The model is free again: the next caller is not blocked by the abandoned generation.
    assert llm.complete([ChatMessage("user", "Again")], max_tokens=3).usage.completion_tokens == 3


def test_a_folder_without_a_model_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=str(tmp_path)):
        TransformersLLM(tmp_path).complete([ChatMessage("user", "Hi")])


# --- a real `transformers serve` -------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    base_url: str
    model: str
    model_dir: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log_path.exists() else "(no log)"


def _wait_until_serving(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_READY_WAIT_S
    problem = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"`transformers serve` exited with code {process.returncode} before it was ready; "
                f"log tail:\n{_log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError as error:
            problem = repr(error)
        time.sleep(0.25)
    raise RuntimeError(
        f"`transformers serve` at {base_url} not healthy after {SERVER_READY_WAIT_S:g} s ({problem}); "
        f"log tail:\n{_log_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def served_tiny_model(tiny_model_dir: Path) -> Iterator[ServedModel]:
    """``transformers serve`` pinned to the tiny model on a free loopback port, stopped after the module."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tiny_model_dir.parent / "serve.log"
    command = [
        str(Path(sys.executable).with_name("transformers")),
        "serve",
        str(tiny_model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--log-level",
        "info",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            start_new_session=True,
        )
    try:
        _wait_until_serving(process, base_url, log_path)
        # The server names a model pinned by path by that path.
        yield ServedModel(base_url=base_url, model=str(tiny_model_dir), model_dir=tiny_model_dir)
    finally:
        _stop(process)


@pytest.fixture
def served_llm(served_tiny_model: ServedModel) -> Iterator[OpenAIChatLLM]:
    llm = OpenAIChatLLM(served_tiny_model.base_url, served_tiny_model.model, timeout_s=30)
    yield llm
    llm.close()


def test_served_model_completes_with_usage_the_tokenizer_agrees_with(
    served_llm: OpenAIChatLLM, served_tiny_model: ServedModel
) -> None:
    question = [ChatMessage("user", "What is a river?")]

    completion = served_llm.complete(question, max_tokens=8)

    assert completion.text
    assert completion.model == served_tiny_model.model
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 8
    # Same tokenizer and chat template on both sides: the server's prompt count is ours.
    assert completion.usage.prompt_tokens == TransformersLLM(served_tiny_model.model_dir).count_tokens(
        question
    )


def test_served_model_streams_deltas_that_concatenate_to_the_answer(served_llm: OpenAIChatLLM) -> None:
    question = [ChatMessage("system", "Be brief."), ChatMessage("user", "Name a colour.")]
    deltas: list[str] = []

    streamed = served_llm.complete(question, max_tokens=10, on_text=deltas.append)
    plain = served_llm.complete(question, max_tokens=10)

    assert len(deltas) > 1
    assert "".join(deltas) == streamed.text
    assert streamed.text == plain.text
    assert streamed.usage == plain.usage
    assert streamed.usage.prompt_tokens > 0


def test_served_model_list_and_unknown_model_error_name_what_is_served(
    served_tiny_model: ServedModel,
) -> None:
    wrong = OpenAIChatLLM(served_tiny_model.base_url + "/v1/", "no-such-model", max_retries=0)

    assert wrong.served_models() == [served_tiny_model.model]
    with pytest.raises(UnknownModelError) as raised:
        wrong.complete([ChatMessage("user", "Hi")], max_tokens=2)

    message = str(raised.value)
    assert "'no-such-model'" in message
    assert repr(served_tiny_model.model) in message
    assert "ODS_LLM__MODEL" in message
