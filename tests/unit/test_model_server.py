"""The ModelServer adapter: command lines, the bounded readiness wait (against a real in-test HTTP server),
and stopping a whole process group — real processes, no model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ods.adapters.models.server import (
    LocalModelServer,
    LoraModule,
    ModelServerError,
    ServerProcess,
    ServerSpec,
    log_tail,
    served_model_id,
    transformers_command,
    vllm_command,
)
from tests.support.http_fakes import FakeHTTPServer


def _spec(**changes: object) -> ServerSpec:
    values: dict[str, object] = {
        "backend": "vllm",
        "model_dir": Path("/cache/abc"),
        "served_name": "support-bot",
        "host": "127.0.0.1",
        "port": 8123,
    }
    values.update(changes)
    return ServerSpec(**values)  # type: ignore[arg-type]


def test_vllm_command_carries_the_served_name_and_gpu_settings() -> None:
    spec = _spec(dtype="bfloat16", max_model_len=4096, tensor_parallel_size=2, gpu_memory_utilization=0.85)

    assert vllm_command(spec, "/opt/vllm/bin/vllm") == [
        "/opt/vllm/bin/vllm",
        "serve",
        "/cache/abc",
        "--served-model-name",
        "support-bot",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--dtype",
        "bfloat16",
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.85",
        "--max-model-len",
        "4096",
    ]
    assert spec.base_url == "http://127.0.0.1:8123/v1"
    assert _spec(host="0.0.0.0").base_url == "http://127.0.0.1:8123/v1"  # noqa: S104


def test_vllm_command_serves_a_lora_adapter_on_its_base_model() -> None:
    spec = _spec(
        model_dir=Path("/models/base"),
        served_name="bot-base",
        lora_modules=(LoraModule("support-bot", Path("/cache/adapter")),),
    )

    command = vllm_command(spec)

    assert command[:3] == ["vllm", "serve", "/models/base"]
    assert command[-3:] == ["--enable-lora", "--lora-modules", "support-bot=/cache/adapter"]
    assert "--max-model-len" not in command


def test_transformers_command_is_pinned_to_the_folder_on_cpu_and_refuses_adapters() -> None:
    spec = _spec(backend="transformers")

    assert transformers_command(spec, "transformers") == [
        "transformers",
        "serve",
        "/cache/abc",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--device",
        "cpu",
    ]
    with pytest.raises(ModelServerError, match="cannot serve the LoRA adapter"):
        transformers_command(_spec(lora_modules=(LoraModule("x", Path("/a")),)))


def test_a_missing_executable_is_a_clear_error_before_anything_starts(tmp_path: Path) -> None:
    server = LocalModelServer(executables={"vllm": str(tmp_path / "no-vllm-here")})

    with pytest.raises(ModelServerError, match=r"`vllm` executable was not found.*backend transformers"):
        server.launch(_spec(), tmp_path / "serve.log")
    assert not (tmp_path / "serve.log").exists()


def test_served_model_id_prefers_the_served_name_then_the_folder() -> None:
    spec = _spec()

    assert served_model_id(spec, ["support-bot", "other"]) == "support-bot"
    assert served_model_id(spec, ["other", "/cache/abc"]) == "/cache/abc"
    assert served_model_id(spec, ["only-one"]) == "only-one"
    lora = _spec(served_name="bot-base", lora_modules=(LoraModule("bot", Path("/cache/adapter")),))
    assert served_model_id(lora, ["bot-base", "bot"]) == "bot"  # requests must reach the adapter


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    assert log_tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == "(no log)"


# --- readiness against a real HTTP server --------------------------------------------------------------


class _FakeOpenAIServer(BaseHTTPRequestHandler):
    """/health is 503 for the first ``unhealthy`` calls, then 200; /v1/models lists ``models``."""

    unhealthy = 0
    models: tuple[str, ...] = ("tiny",)
    calls: list[str]

    def do_GET(self) -> None:
        self.calls.append(self.path)
        if self.path == "/health":
            status = 503 if self.calls.count("/health") <= self.unhealthy else 200
            self._reply(status, {})
        elif self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": model} for model in self.models]})
        else:
            self._reply(404, {})

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(unhealthy: int, models: tuple[str, ...]) -> Iterator[tuple[str, list[str]]]:
    calls: list[str] = []
    handler = type(
        "Handler", (_FakeOpenAIServer,), {"unhealthy": unhealthy, "models": models, "calls": calls}
    )
    httpd = FakeHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", calls
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def slow_to_start() -> Iterator[tuple[str, list[str]]]:
    yield from _serve(unhealthy=3, models=("/cache/abc",))


@pytest.fixture
def never_lists_a_model() -> Iterator[tuple[str, list[str]]]:
    yield from _serve(unhealthy=0, models=())


def test_readiness_waits_for_health_then_lists_the_served_models(
    slow_to_start: tuple[str, list[str]],
) -> None:
    base_url, calls = slow_to_start
    server = LocalModelServer(poll_s=0.01)

    readiness = server.wait_until_ready(ServerProcess(os.getpid(), Path("x.log"), base_url, ()), timeout_s=30)

    assert readiness.ready and readiness.served_models == ("/cache/abc",)
    assert calls == ["/health"] * 4 + ["/v1/models"]
    assert server.is_healthy(base_url) and server.is_healthy(base_url + "/")


def test_readiness_gives_up_after_the_bounded_wait_naming_the_last_problem(
    never_lists_a_model: tuple[str, list[str]],
) -> None:
    base_url, calls = never_lists_a_model
    now = [0.0]
    server = LocalModelServer(clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + 1.0))

    readiness = server.wait_until_ready(ServerProcess(os.getpid(), Path("x.log"), base_url, ()), timeout_s=5)

    assert not readiness.ready
    assert readiness.problem == "not ready after 5 s (last: /v1/models answered 200 with no model)"
    assert calls.count("/health") == 6  # at t = 0..5 (simulated seconds)


def test_readiness_stops_waiting_when_the_process_exits(tmp_path: Path) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    server = LocalModelServer(poll_s=0.01)

    readiness = server.wait_until_ready(
        ServerProcess(exited.pid, tmp_path / "x.log", "http://127.0.0.1:9/v1", ()), timeout_s=30
    )

    assert not readiness.ready and readiness.problem == "the server process exited before it was ready"
    assert not server.is_healthy("http://127.0.0.1:9/v1")


# --- launching and stopping real process groups ----------------------------------------------------------

STUBBORN_SERVER = """#!/bin/sh
# Ignores SIGTERM (as does its child): only SIGKILL to the process group ends both.
trap '' TERM
echo "starting $*"
sleep 60 &
echo $! > "{child_pid}"
wait
"""


def test_launch_detaches_logs_and_stop_kills_the_whole_group(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    script = tmp_path / "transformers"
    script.write_text(STUBBORN_SERVER.format(child_pid=child_pid))
    script.chmod(0o755)
    server = LocalModelServer(executables={"transformers": str(script)}, poll_s=0.05)
    log = tmp_path / "logs" / "serve.log"

    process = server.launch(_spec(backend="transformers"), log)
    try:
        deadline = time.monotonic() + 10
        while not (child_pid.is_file() and child_pid.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(child_pid.read_text())
        assert os.getpgid(process.pid) == process.pid  # its own session and process group
        assert os.getpgid(child) == process.pid
        assert server.is_running(process.pid) and server.is_running(child)

        assert server.stop(process.pid, grace_s=0.3) is True  # SIGTERM ignored: SIGKILL after the grace

        assert not server.is_running(process.pid)
        deadline = time.monotonic() + 5
        while server.is_running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.is_running(child)
        assert server.stop(process.pid) is False  # already gone
        assert log.read_text().splitlines()[:2] == [
            f"$ {script} serve /cache/abc --host 127.0.0.1 --port 8123 --device cpu",
            "starting serve /cache/abc --host 127.0.0.1 --port 8123 --device cpu",
        ]
    finally:
        if server.is_running(process.pid):
            os.killpg(process.pid, 9)
