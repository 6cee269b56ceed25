"""A real Milvus Lite server in a process of its own on a fixed port, which a test can stop and start again.

``ods.adapters.milvus.lite_server`` picks a new port each time it starts a server; a restart that clients
must survive needs the same address, as a restarted Milvus server keeps its own. Clients reach it as a
Milvus server (``http://127.0.0.1:PORT``), so everything behaves as against a remote Milvus.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

_SERVE = """
import logging, signal, sys, threading
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
from milvus_lite.adapter.grpc.server import start_server_in_thread
server, db, port = start_server_in_thread(data_dir=sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
# the end of stdin is the test process's end, however it ended: no server outlives it
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", port, flush=True)
stop.wait()
server.stop(grace=1).wait()
db.close()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MilvusLiteServer:
    """``start()``, ``stop()`` (SIGTERM: the server stops and closes its data, as a restart does) or
    ``kill()``; ``restart_after(seconds)`` starts it again from a thread while the test goes on."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[str] | None = None
        self._restarts: list[threading.Thread] = []

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(self.folder), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()  # the server answers "ready PORT" once it listens
        if not line.startswith("ready"):
            process.kill()
            process.wait()
            raise RuntimeError(
                f"Milvus Lite server on port {self.port} did not start (exit {process.poll()})"
            )
        self._process = process

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            if self._process.stdin is not None:
                self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process = None

    def restart_after(self, seconds: float) -> threading.Thread:
        """Start the (stopped) server again ``seconds`` from now, from a thread; returns that thread."""
        timer = threading.Timer(seconds, self.start)
        timer.start()
        self._restarts.append(timer)
        return timer

    def close(self) -> None:
        for thread in self._restarts:
            if isinstance(thread, threading.Timer):
                thread.cancel()
            with contextlib.suppress(RuntimeError):
                thread.join()
        self.stop()
