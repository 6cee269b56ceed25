"""OpenAI-compatible model servers run as managed local processes: `vllm serve` and `transformers serve`.

A server is launched detached (its own session and process group), so it outlives the flow run that
started it; its output goes to a log file. Readiness is ``GET /health`` answering 200 and ``GET /v1/models``
listing a model, within a bounded wait. Stopping signals the whole process group: SIGTERM, then SIGKILL
after a grace period (vLLM spawns engine workers that must not be orphaned).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import httpx

from ods.adapters.workers.processes import is_zombie, pid_exists
from ods.errors import OdsError

ServerBackend = Literal["vllm", "transformers"]
BACKENDS: tuple[ServerBackend, ...] = ("vllm", "transformers")
LOG_TAIL_LINES = 40
WILDCARD_HOST = "0.0.0.0"  # noqa: S104 - recognised, not bound here


class ModelServerError(OdsError):
    """A model server could not be launched, did not become ready, or could not be stopped."""


@dataclass(frozen=True)
class LoraModule:
    """A LoRA adapter served on top of the base model, under its own model id."""

    name: str
    path: Path


@dataclass(frozen=True)
class ServerSpec:
    """What to serve and how: one model folder behind one host:port.

    ``model_dir`` is the folder the server loads (for a LoRA version: the base model, with the adapter in
    ``lora_modules``). The vLLM settings are ignored by ``transformers serve``.
    """

    backend: ServerBackend
    model_dir: Path
    served_name: str
    host: str
    port: int
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    lora_modules: tuple[LoraModule, ...] = ()
    extra_args: tuple[str, ...] = ()

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` (a wildcard bind address is reached on loopback)."""
        host = "127.0.0.1" if self.host in (WILDCARD_HOST, "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/v1"


def vllm_command(spec: ServerSpec, executable: str = "vllm") -> list[str]:
    """``vllm serve DIR --served-model-name NAME --host --port --dtype ...`` (+ LoRA modules)."""
    return [executable, "serve", *vllm_serve_args(spec)]


def vllm_serve_args(spec: ServerSpec) -> list[str]:
    """The arguments of ``vllm serve`` for ``spec``, the same on a host and in a Kubernetes pod."""
    command = [
        str(spec.model_dir),
        "--served-model-name",
        spec.served_name,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--dtype",
        spec.dtype,
        "--tensor-parallel-size",
        str(spec.tensor_parallel_size),
        "--gpu-memory-utilization",
        f"{spec.gpu_memory_utilization:g}",
    ]
    if spec.max_model_len is not None:
        command += ["--max-model-len", str(spec.max_model_len)]
    if spec.lora_modules:
        command += ["--enable-lora", "--lora-modules"]
        command += [f"{module.name}={module.path}" for module in spec.lora_modules]
    return command + list(spec.extra_args)


def transformers_command(spec: ServerSpec, executable: str = "transformers") -> list[str]:
    """``transformers serve DIR --host --port --device cpu`` (it serves the model under the folder path)."""
    if spec.lora_modules:
        raise ModelServerError(
            f"`transformers serve` cannot serve the LoRA adapter {spec.lora_modules[0].path} on top of "
            f"{spec.model_dir}; deploy with backend vllm, or train with merge_adapter: true"
        )
    return [
        executable,
        "serve",
        str(spec.model_dir),
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--device",
        "cpu",
        *spec.extra_args,
    ]


def server_command(spec: ServerSpec, executable: str) -> list[str]:
    """The command line of ``spec.backend``."""
    if spec.backend == "vllm":
        return vllm_command(spec, executable)
    if spec.backend == "transformers":
        return transformers_command(spec, executable)
    raise ModelServerError(f"unknown serving backend {spec.backend!r}; use one of: {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class ServerProcess:
    """A launched server: its process (group) id, log file, URL and command line."""

    pid: int
    log_path: Path
    base_url: str
    command: tuple[str, ...]


@dataclass(frozen=True)
class Readiness:
    """The outcome of waiting for a server: ready (with the model ids it serves) or the reason it is not."""

    ready: bool
    served_models: tuple[str, ...] = ()
    problem: str | None = None
    seconds: float = 0.0


class ModelServer(Protocol):
    """Launches, watches and stops OpenAI-compatible model servers."""

    def launch(self, spec: ServerSpec, log_path: Path) -> ServerProcess: ...

    def wait_until_ready(self, process: ServerProcess, timeout_s: float) -> Readiness: ...

    def is_running(self, pid: int) -> bool: ...

    def is_healthy(self, base_url: str) -> bool: ...

    def stop(self, pid: int, grace_s: float = ...) -> bool: ...


def _default_executable(name: str) -> str | None:
    """The console script next to this interpreter (the venv's), else the one on PATH."""
    sibling = Path(sys.executable).with_name(name)
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which(name)


@dataclass
class LocalModelServer:
    """Model servers as detached processes on this machine.

    ``executables`` maps a backend to its program (default: the console script next to this Python, else
    on PATH); ``env`` is added to the environment the server inherits (``HF_HUB_OFFLINE=1`` always: a
    server never downloads). ``transport`` lets unit tests answer HTTP without a socket.
    """

    executables: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    poll_s: float = 0.25
    request_timeout_s: float = 2.0
    transport: httpx.BaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def executable(self, backend: ServerBackend) -> str:
        """The program that runs ``backend``, or a :class:`ModelServerError` saying how to get it."""
        found = self.executables.get(backend) or _default_executable(backend)
        if not found or (not Path(found).is_file() and shutil.which(found) is None):
            hint = (
                "install vLLM on the GPU worker in its own virtualenv and put `vllm` on PATH (or run the "
                "vllm/vllm-openai image), or deploy with backend transformers"
                if backend == "vllm"
                else "install transformers with its serving extra (`pip install 'transformers[serving]'`)"
            )
            raise ModelServerError(
                f"the `{backend}` executable was not found on this worker"
                f"{f' (looked for {found})' if found else ''}; {hint}"
            )
        return found

    def launch(self, spec: ServerSpec, log_path: Path) -> ServerProcess:
        """Start the server detached, its stdout and stderr appended to ``log_path``."""
        command = server_command(spec, self.executable(spec.backend))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **self.env, "HF_HUB_OFFLINE": "1"}
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=environment,
                    start_new_session=True,  # its own process group, outliving the flow run
                )
            except OSError as error:
                raise ModelServerError(f"could not start {command[0]}: {error}") from None
        # The Popen object is dropped on purpose: the server outlives this function (and this process).
        process.returncode = 0  # keeps Popen.__del__ from warning about a still-running child
        return ServerProcess(process.pid, log_path, spec.base_url, tuple(command))

    def wait_until_ready(self, process: ServerProcess, timeout_s: float) -> Readiness:
        """Poll ``/health`` then ``/v1/models`` until both answer, the process exits, or ``timeout_s`` passes."""
        root = process.base_url.removesuffix("/v1")
        started = self.clock()
        problem = "no answer yet"
        with self._client() as client:
            while True:
                elapsed = self.clock() - started
                if not self.is_running(process.pid):
                    return Readiness(
                        False, problem="the server process exited before it was ready", seconds=elapsed
                    )
                try:
                    health = client.get(f"{root}/health")
                    if health.status_code == 200:
                        listed = client.get(f"{root}/v1/models")
                        ids = tuple(item["id"] for item in listed.json().get("data", []) if "id" in item)
                        if listed.status_code == 200 and ids:
                            return Readiness(True, served_models=ids, seconds=self.clock() - started)
                        problem = f"/v1/models answered {listed.status_code} with no model"
                    else:
                        problem = f"/health answered {health.status_code}"
                except (httpx.HTTPError, ValueError, AttributeError) as error:
                    problem = f"{type(error).__name__}: {error}"
                if elapsed >= timeout_s:
                    return Readiness(
                        False,
                        problem=f"not ready after {timeout_s:g} s (last: {problem})",
                        seconds=elapsed,
                    )
                self.sleep(self.poll_s)

    def is_running(self, pid: int) -> bool:
        """Whether process ``pid`` still runs (a finished child of ours is reaped on the way)."""
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
            if reaped == pid:
                return False
        except ChildProcessError:
            pass  # not our child (started by an earlier flow run): ask the kernel
        return pid_exists(pid) and not is_zombie(pid)

    def is_healthy(self, base_url: str) -> bool:
        """Whether ``{root}/health`` answers 200 now."""
        try:
            with self._client() as client:
                return (
                    client.get(f"{base_url.removesuffix('/').removesuffix('/v1')}/health").status_code == 200
                )
        except httpx.HTTPError:
            return False

    def stop(self, pid: int, grace_s: float = 10.0) -> bool:
        """SIGTERM the process group of ``pid``, SIGKILL it after ``grace_s``; False if it was already gone."""
        if not self.is_running(pid):
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = self.clock() + grace_s
        while self.clock() < deadline:
            if not self.is_running(pid):
                return True
            self.sleep(min(self.poll_s, 0.1))
        _signal_group(pid, signal.SIGKILL)
        deadline = self.clock() + 5.0
        while self.is_running(pid) and self.clock() < deadline:
            self.sleep(0.05)
        if self.is_running(pid):
            raise ModelServerError(
                f"server process {pid} survived SIGKILL; stop it by hand (`kill -9 -{pid}`)"
            )
        return True

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.request_timeout_s, transport=self.transport)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as error:
        raise ModelServerError(f"not allowed to signal server process group {pid}: {error}") from None


def log_tail(path: Path | str | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server log ('(no log)' when there is none)."""
    if path is None or not Path(path).is_file():
        return "(no log)"
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def served_model_id(spec: ServerSpec, listed: Sequence[str]) -> str:
    """The id requests must send: a LoRA module's name, else the served name, else the folder, else the first.

    vLLM lists a LoRA version under its module name (the base model under ``served_name``);
    ``transformers serve`` lists a model by the folder path it was given.
    """
    for candidate in (*(module.name for module in spec.lora_modules), spec.served_name, str(spec.model_dir)):
        if candidate in listed:
            return candidate
    return listed[0]
