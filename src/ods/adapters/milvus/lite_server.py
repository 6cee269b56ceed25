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

A *shared* server (``shared=True``) is one server process per data folder that every ods process reaches,
so `ods serve` and ingest runs (the CLI's, a flow's) use one folder at the same time. Its state lives
beside the folder, in ``<file>.ods-server/``: ``lock`` (an ``flock`` taken to start, join, leave or stop
it), ``server.json`` (its pid and port, written once it listens), ``clients/<pid>`` (one lease per client
process) and ``server.log``. Whichever process needs it first starts it (in a session of its own, so a
Ctrl-C meant for that process does not stop it); the others find it in ``server.json`` and add their
lease. It stops when its last client leaves (:func:`stop_lite_servers`, also run at exit) or, for clients
that were killed, within :data:`SHARED_IDLE_S` of the last lease found alive (it checks every second).
A shared server that runs is used by every later client of the folder, whatever mode it asked for: the
folder is its alone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ods.adapters.workers.pipes import ParentLink, WorkerProcess
from ods.errors import OdsError

_START_S = 60.0
_STOP_S = 15.0
_WORKER_COMMAND = "from ods.adapters.milvus.lite_server import serve; serve()"
_SHARED_COMMAND = "from ods.adapters.milvus.lite_server import serve_shared; serve_shared()"
SHARED_STATE_SUFFIX = ".ods-server"
SHARED_IDLE_S = 5.0
"""How long a shared server keeps running once no client process of it is alive."""
_WATCH_S = 1.0


class MilvusLiteProcessError(OdsError):
    """The Milvus Lite server process could not be started."""


@dataclass(frozen=True)
class SharedLiteServer:
    """A shared Milvus Lite server as recorded beside its data folder, and its live client processes."""

    folder: str
    pid: int
    port: int
    started_at: float
    clients: tuple[int, ...] = ()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class _Server:
    uri: str
    process: WorkerProcess | None  # None: pymilvus's server in this process's threads, or a shared one
    shared: SharedLiteServer | None = None
    started: subprocess.Popen[bytes] | None = None  # the shared server, when this process started it

    @property
    def alive(self) -> bool:
        if self.shared is not None:
            return _process_alive(self.shared.pid)
        return self.process is None or self.process.running


_SERVERS: dict[str, _Server] = {}
_LOCK = threading.Lock()
_STOP_AT_EXIT: list[bool] = []


def lite_server_uri(path: str, *, separate_process: bool, shared: bool = False) -> str:
    """The URI of the Milvus Lite server for the data folder ``path`` (a ``.db`` path), started if none runs
    yet in this process: the folder's shared server when one runs or ``shared`` asks for it (see the
    module's docstring), else in a worker process when ``separate_process``, else in this process's threads."""
    folder = str(Path(path).resolve())
    with _LOCK:
        server = _SERVERS.get(folder)
        if server is not None and server.alive:
            return server.uri
        if server is not None and server.process is not None:
            server.process.kill()  # it died: reap it and close our ends of its pipes
        server = _join_shared(folder, start=shared)
        if server is None:
            server = _start_worker(folder) if separate_process else _start_in_process(folder)
        _SERVERS[folder] = server
        return server.uri


def lite_server_pid(path: str) -> int | None:
    """The pid of the process serving ``path`` for this process (a worker or the shared server); None when
    none runs (or it runs in this process)."""
    with _LOCK:
        server = _SERVERS.get(str(Path(path).resolve()))
    if server is None or not server.alive:
        return None
    if server.shared is not None:
        return server.shared.pid
    return server.process.pid if server.process is not None else None


def shared_lite_server(path: str) -> SharedLiteServer | None:
    """The shared server of the data folder ``path`` with its live clients, if one runs; starts nothing."""
    folder = str(Path(path).resolve())
    state = _state_dir(folder)
    if not state.is_dir():
        return None
    with _state_lock(state):
        return _live_record(state)


def stop_lite_servers() -> None:
    """Stop every Milvus Lite server this process started (both kinds), releasing their folders' locks, and
    leave the shared servers it used (stopped now when no other client process is alive)."""
    from milvus_lite.server_manager import server_manager_instance

    with _LOCK:
        servers = list(_SERVERS.items())
        _SERVERS.clear()
    for folder, server in servers:
        if server.shared is not None:
            _leave_shared(folder, server)
        elif server.process is not None:
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
    _stop_at_exit()
    return _Server(f"http://127.0.0.1:{reply[1]}", worker)


def _stop_at_exit() -> None:
    if not _STOP_AT_EXIT:
        _STOP_AT_EXIT.append(True)
        atexit.register(stop_lite_servers)


# -- the shared server: the clients' side ------------------------------------------------------------------


def _state_dir(folder: str) -> Path:
    path = Path(folder)
    return path.with_name(path.name + SHARED_STATE_SUFFIX)


@contextlib.contextmanager
def _state_lock(state: Path) -> Iterator[None]:
    """The folder's shared-server lock, held by one process at a time (released if it dies)."""
    import fcntl

    with (state / "lock").open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _join_shared(folder: str, *, start: bool) -> _Server | None:
    """Join the folder's shared server (adding this process's lease), starting it when ``start``; None
    when none runs and ``start`` is false."""
    state = _state_dir(folder)
    if not start and not state.is_dir():
        return None
    (state / "clients").mkdir(parents=True, exist_ok=True)
    started = None
    with _state_lock(state):
        record = _live_record(state)
        if record is None and not start:
            return None
        _add_lease(state)
        if record is None:
            try:
                record, started = _start_shared(folder, state)
            except MilvusLiteProcessError:
                _remove_lease(state)
                raise
    _stop_at_exit()
    return _Server(record.uri, None, shared=record, started=started)


def _leave_shared(folder: str, server: _Server) -> None:
    """Remove this process's lease; the last client stops the server now (the folder is free after)."""
    assert server.shared is not None
    state = _state_dir(folder)
    if not state.is_dir():  # the file's folder was removed: its server stops by itself
        return
    with _state_lock(state):
        _remove_lease(state)
        record = _live_record(state)
        if record is None or record.pid != server.shared.pid or record.clients:
            return
        (state / "server.json").unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)  # it stops its gRPC server and closes the folder
        deadline = time.monotonic() + _STOP_S
        while _process_alive(record.pid) and time.monotonic() < deadline:
            if server.started is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.started.wait(timeout=0.1)
            else:
                time.sleep(0.05)
        if _process_alive(record.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
        if server.started is not None:
            server.started.wait()


def _start_shared(folder: str, state: Path) -> tuple[SharedLiteServer, subprocess.Popen[bytes]]:
    """Start the folder's shared server (the caller holds the lock) and wait until it listens."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path or str(Path.cwd()) for path in sys.path))
    with (state / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _SHARED_COMMAND, folder, str(state)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for this process leaves the other clients' server up
        )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], _START_S)
    line = process.stdout.readline().decode(errors="replace").strip() if ready else ""
    process.stdout.close()
    record = _live_record(state) if line.startswith("ready") else None
    if record is None:
        if process.poll() is None:
            process.kill()
        process.wait()
        reason = line.removeprefix("error ") or f"it did not answer within {_START_S:g} s"
        raise MilvusLiteProcessError(
            f"the shared Milvus Lite server for {folder} did not start: {reason} (log: "
            f"{state / 'server.log'}). Another process may hold the folder (only one process at a time "
            "can open a Milvus Lite file); stop it, or let it finish, and try again"
        )
    return record, process


# -- the shared server's state: the record and the leases --------------------------------------------------


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie), and is the process that started at ``started`` when given."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return True  # no /proc: the signal check is all there is
    return fields[0] != "Z" and (started is None or fields[19] == started)


def _add_lease(state: Path) -> None:
    pid = os.getpid()
    (state / "clients" / str(pid)).write_text(_process_start(pid) or "")


def _remove_lease(state: Path) -> None:
    (state / "clients" / str(os.getpid())).unlink(missing_ok=True)


def _live_clients(state: Path) -> tuple[int, ...]:
    """The pids holding a lease that still run; the leases of ended processes are removed."""
    alive = []
    for lease in (state / "clients").glob("*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(lease.name)
            if _process_alive(pid, lease.read_text() or None):
                alive.append(pid)
                continue
            lease.unlink(missing_ok=True)
    return tuple(sorted(alive))


def _live_record(state: Path) -> SharedLiteServer | None:
    """The recorded shared server if it still runs (a stale record is removed)."""
    path = state / "server.json"
    try:
        data = json.loads(path.read_text())
        pid, started = int(data["pid"]), data.get("process_start")
        record = SharedLiteServer(
            folder=str(data["folder"]), pid=pid, port=int(data["port"]), started_at=float(data["started_at"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _process_alive(pid, started):
        path.unlink(missing_ok=True)
        return None
    return SharedLiteServer(
        record.folder, record.pid, record.port, record.started_at, clients=_live_clients(state)
    )


def _write_record(state: Path, folder: str, port: int) -> None:
    pid = os.getpid()
    data = {
        "pid": pid,
        "port": port,
        "folder": folder,
        "started_at": time.time(),
        "process_start": _process_start(pid),
    }
    partial = state / f"server.json.{pid}"
    partial.write_text(json.dumps(data))
    partial.replace(state / "server.json")


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


def serve_shared() -> None:
    """Shared server main (``python -c ... FOLDER STATE``): serve the folder on a free port, record it,
    answer ``ready PORT`` on stdout, then serve until SIGTERM or until no client process has been alive
    for :data:`SHARED_IDLE_S` (checked under the folder's lock, so no client joins while it stops)."""
    import logging

    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)  # see ods.adapters.milvus.index
    folder, state = sys.argv[1], Path(sys.argv[2])
    try:
        from milvus_lite.adapter.grpc.server import start_server_in_thread

        server, db, port = start_server_in_thread(data_dir=folder, host="127.0.0.1", port=0)
    except Exception as error:  # noqa: BLE001 - reported to the starter, which raises it
        os.write(1, f"error {type(error).__name__}: {' '.join(str(error).split())}\n".encode())
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _write_record(state, folder, port)
    os.write(1, f"ready {port}\n".encode())
    os.dup2(2, 1)  # anything printed later goes to the log, not to a pipe nobody reads

    def shut_down() -> None:
        server.stop(grace=5).wait()
        db.close()

    idle_since: float | None = None
    while not stop.wait(_WATCH_S):
        if not state.is_dir():  # the file's folder was removed: nobody can use this server any more
            break
        if _live_clients(state):
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since < SHARED_IDLE_S:
            continue
        with _state_lock(state):
            if not _live_clients(state):
                (state / "server.json").unlink(missing_ok=True)
                shut_down()
                return
    shut_down()  # SIGTERM: the client that sent it removed the record and waits for the folder
