"""Milvus Lite served from a process of its own, for work that keeps this process's cores busy.

Milvus Lite 3.x is pure Python: pymilvus starts its gRPC server as threads of the calling process, so every
upsert, delete, flush and background index build holds this process's GIL. During ingestion that is the
GIL the embedding model needs between its kernels. ``lite_server_uri(path, separate_process=True)`` starts
the same server in a worker process (``python -c``, as the parser and validation workers are) and returns
its ``http://127.0.0.1:PORT``; pymilvus then talks to it like to any Milvus server.

One server per data folder per process, whichever way it was started: Milvus Lite holds an exclusive lock
on its folder, so a second server for the same folder (in this process or in another) could not open it.
The worker exits when its parent does (the end of its stdin), so a killed run leaves no server holding
the lock.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ods.adapters.workers.pipes import ParentLink, WorkerProcess
from ods.errors import OdsError

_START_S = 60.0
_STOP_S = 15.0
_WORKER_COMMAND = "from ods.adapters.milvus.lite_server import serve; serve()"


class MilvusLiteProcessError(OdsError):
    """The Milvus Lite server process could not be started."""


@dataclass
class _Server:
    uri: str
    process: WorkerProcess | None  # None: pymilvus's server in this process's threads


_SERVERS: dict[str, _Server] = {}
_LOCK = threading.Lock()
_STOP_AT_EXIT: list[bool] = []


def lite_server_uri(path: str, *, separate_process: bool) -> str:
    """The URI of the Milvus Lite server for the data folder ``path`` (a ``.db`` path), started if none runs
    yet in this process: in a worker process when ``separate_process``, else in this process's threads."""
    folder = str(Path(path).resolve())
    with _LOCK:
        server = _SERVERS.get(folder)
        if server is not None and (server.process is None or server.process.running):
            return server.uri
        if server is not None and server.process is not None:
            server.process.kill()  # it died: reap it and close our ends of its pipes
        server = _start_worker(folder) if separate_process else _start_in_process(folder)
        _SERVERS[folder] = server
        return server.uri


def lite_server_pid(path: str) -> int | None:
    """The pid of the worker process serving ``path``; None when none runs (or it runs in this process)."""
    with _LOCK:
        server = _SERVERS.get(str(Path(path).resolve()))
    if server is None or server.process is None or not server.process.running:
        return None
    return server.process.pid


def stop_lite_servers() -> None:
    """Stop every Milvus Lite server this process started (both kinds), releasing their folders' locks."""
    from milvus_lite.server_manager import server_manager_instance

    with _LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        if server.process is not None:
            # It stops its server at the end of its input, which flushes; killed if it hangs.
            server.process.stop(grace_s=_STOP_S)
    server_manager_instance.release_all()


def _start_in_process(folder: str) -> _Server:
    from milvus_lite.server_manager import server_manager_instance

    uri = server_manager_instance.start_and_get_uri(folder)
    if uri is None:
        raise MilvusLiteProcessError(
            f"Milvus Lite could not open {folder}; its error is logged above. Another process may hold the "
            "folder (only one process at a time can open a Milvus Lite file)"
        )
    return _Server(uri, None)


def _start_worker(folder: str) -> _Server:
    worker = WorkerProcess(_WORKER_COMMAND)
    with contextlib.suppress(OSError):  # a worker gone at once answers nothing: reported below
        worker.send(folder)
    reply = worker.start_reply(_START_S) or ("error", f"it did not answer within {_START_S:g} s")
    if reply[0] != "ready":
        worker.kill()
        raise MilvusLiteProcessError(
            f"the Milvus Lite server process for {folder} did not start: {reply[1]}. Another process may hold "
            "the folder (only one process at a time can open a Milvus Lite file)"
        )
    if not _STOP_AT_EXIT:
        _STOP_AT_EXIT.append(True)
        atexit.register(stop_lite_servers)
    return _Server(f"http://127.0.0.1:{reply[1]}", worker)


def serve() -> None:
    """Worker main: read the folder, start the server on a free port, answer ("ready", port), then serve
    until the parent closes our stdin or dies."""
    import logging

    parent = ParentLink()
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)  # see ods.adapters.milvus.index
    folder = parent.receive()
    if folder is None:
        return
    try:
        from milvus_lite.adapter.grpc.server import start_server_in_thread

        server, db, port = start_server_in_thread(data_dir=folder, host="127.0.0.1", port=0)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
        parent.send(("error", f"{type(error).__name__}: {error}"))
        return
    parent.send(("ready", port))
    try:
        while parent.requests.read(1 << 16):  # the parent never writes again: this returns at its end
            pass
    finally:
        server.stop(grace=5).wait()
        db.close()
    sys.exit(0)
