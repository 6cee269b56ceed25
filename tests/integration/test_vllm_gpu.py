"""vLLM really serving a model, on a GPU machine (marked `gpu`).

vLLM is never installed in the default environment (see ENVIRONMENT.md): on a lent GPU machine, install it in
its own virtualenv and put its `vllm` executable on PATH, then run `pytest -m gpu`. Everywhere else this test
is skipped with that reason; the vLLM command line, manifests and the missing-executable rollback are covered
by tests that run everywhere (tests/unit/test_model_server.py, tests/flows/test_deploy_model.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ods.adapters.models.llm import OpenAIChatLLM
from ods.adapters.models.server import LocalModelServer, ServerSpec
from ods.adapters.workers.processes import free_port
from ods.domain.chat import ChatMessage
from tests.support.tiny_llm import build_tiny_causal_lm

pytestmark = pytest.mark.gpu


def _gpu_missing() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU here: run `pytest -m gpu` on a lent GPU machine"
    if shutil.which("vllm") is None:
        return "no `vllm` executable on PATH: install vllm in its own virtualenv on the GPU machine"
    return None


def test_vllm_serves_a_model_behind_the_openai_api(tmp_path: Path) -> None:
    missing = _gpu_missing()
    if missing:
        pytest.skip(missing)
    model_dir = build_tiny_causal_lm(tmp_path / "tiny")
    spec = ServerSpec(
        backend="vllm",
        model_dir=model_dir,
        served_name="tiny",
        host="127.0.0.1",
        port=free_port(),
        dtype="float16",
        max_model_len=512,
        gpu_memory_utilization=0.3,
    )
    server = LocalModelServer(executables={"vllm": shutil.which("vllm") or "vllm"})
    process = server.launch(spec, tmp_path / "vllm.log")
    try:
        readiness = server.wait_until_ready(process, timeout_s=480)
        assert readiness.ready, f"{readiness.problem}\n{(tmp_path / 'vllm.log').read_text()[-3000:]}"
        assert "tiny" in readiness.served_models
        llm = OpenAIChatLLM(spec.base_url, "tiny", timeout_s=60, max_retries=0)
        streamed: list[str] = []
        reply = llm.complete([ChatMessage("user", "Say hello.")], max_tokens=8, on_text=streamed.append)
        llm.close()
        assert reply.usage.completion_tokens > 0 and "".join(streamed) == reply.text
    finally:
        server.stop(process.pid, grace_s=20)
