"""How the `ods` commands that run a flow run it: Prefect's temporary server, watched so it dies with them.

With no ``PREFECT_API_URL``, Prefect starts a temporary API server the first time a flow run needs one: a
subprocess that imports Prefect's server and starts in ~4 s while the command waits, and that stops when
the command ends. :func:`start_flow_runner` launches that process first, before the command imports
Prefect's server module (~1.4 s) and its flow (pandas, the ods modules, the tasks), so they overlap, and
waits for it in the background. That server is started through this
module's watchdog (``python -m ods.orchestration.temporary_server PARENT_PID UVICORN_ARGS...``, see
:func:`run_watched_uvicorn`), so it stops even when the command is killed outright (SIGKILL), and
once it answers, runs that an earlier, killed command left Running are marked Crashed
(:func:`ods.orchestration.runs.crash_orphaned_runs`); the runs this command starts carry its pid for the next.

On that temporary server, flow runs send no heartbeats. Heartbeats let a lasting server mark a run whose
process died as crashed, but a temporary server dies with the process, so nothing could ever read them; and
a sync flow run waits at its end for the heartbeat thread's current 1-second sleep. A configured server
(``PREFECT_API_URL``) gets Prefect's settings unchanged, heartbeats included: `ods prefect setup` installs
the automation that crashes runs whose heartbeats stop.

Results and failed states are stored as JSON on every path (:func:`ods.orchestration.runs.json_results`).
Prefect's own console output (run logs, tracebacks, its services' warnings) is dropped unless the command
runs with ``--verbose``: the error a command reports is its one ``error:`` line, and the run's full log,
traceback included, stays with the run on the Prefect server.
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

from ods.adapters.workers.processes import free_port
from ods.errors import OdsError

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")

logger = logging.getLogger(__name__)
_SERVER_LOG_BYTES = 5 * 1024 * 1024


@dataclass
class CliOutput:
    """What the `ods` command shows besides its own lines; set once by the command's global options."""

    quiet_prefect: bool = False  # drop Prefect's console logs (not --verbose)
    verbose: bool = False  # --verbose: Prefect's logs and the traceback of an error


OUTPUT = CliOutput()


MIN_STARTUP_WAIT_S = 90
"""Seconds the temporary server may take to answer, at least (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
raises it)."""


class FlowRunner:
    """Runs flows once the Prefect API they need is up; see :func:`start_flow_runner`.

    Given a temporary ``server`` (not started), it starts it at once in a background thread, then calls
    ``after_start`` there (the sweep of runs left by killed commands). Runs on that server carry
    ``tags`` (the CLI's tag and this process's).
    """

    def __init__(
        self,
        server: Any | None = None,
        *,
        after_start: Callable[[], None] | None = None,
        tags: tuple[str, ...] = (),
        server_log: Path | str = "this console",
    ) -> None:
        self._failure: Exception | None = None
        self._server_started: threading.Thread | None = None
        self._tags = tags
        self._server_log = server_log
        if server is not None:
            self._server_started = threading.Thread(
                target=self._start,
                args=(server, after_start),
                name="prefect-temporary-server",
                daemon=True,
            )
            self._server_started.start()

    def run(
        self, flow: Callable[Parameters, Result], *args: Parameters.args, **kwargs: Parameters.kwargs
    ) -> Result:
        """``flow(*args, **kwargs)`` with results stored as JSON, once the temporary server answers
        (re-raising what starting it raised), with heartbeats off and the runner's tags on that server."""
        from ods.orchestration.runs import json_results

        if self._server_started is None:
            with json_results():
                return flow(*args, **kwargs)
        self._server_started.join()
        if self._failure is not None:
            raise OdsError(
                f"Prefect's temporary server did not start: {self._failure} (its output: "
                f"{self._server_log}); or set PREFECT_API_URL to a running Prefect server"
            ) from self._failure
        with json_results(), _without_heartbeats(), _tagged(self._tags):
            return flow(*args, **kwargs)

    def _start(self, server: Any, after_start: Callable[[], None] | None) -> None:
        from prefect.settings import get_current_settings

        # Prefect waits 20 s by default, which a busy 2-core machine (a test run, an ingest beside it)
        # can pass while the server migrates its database; a longer wait costs nothing when it is quick.
        configured = get_current_settings().server.ephemeral.startup_timeout_seconds
        try:
            server.start(timeout=max(configured, MIN_STARTUP_WAIT_S))
        except Exception as error:  # noqa: BLE001 - re-raised in the command's thread by run()
            self._failure = error
            return
        if after_start is not None:
            after_start()


def start_flow_runner() -> FlowRunner:
    """Start Prefect's temporary server in the background when flows will need one, and return the
    runner to run them with. Where a Prefect API is configured (or the temporary server is turned off),
    the runner just calls the flow."""
    from prefect.settings import get_current_settings

    from ods.orchestration.runs import CLI_RUN_TAG, current_process

    if OUTPUT.quiet_prefect:
        _quiet_prefect_console()
    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return FlowRunner()
    # The server's process starts first: importing Prefect's server module here takes ~1.4 s, which the
    # process spends on its own imports meanwhile (on another core).
    launched = None if _temporary_server_running() else _launch_watched_uvicorn(free_port())
    # Prefect's own launcher, through the watchdog: flows that ask for the API later get this same server.
    server = _watched_server_class()()
    if launched is not None:
        server.adopt(launched)
    return FlowRunner(
        server,
        after_start=_crash_orphaned_runs,
        tags=(CLI_RUN_TAG, current_process().tag),
        server_log=temporary_server_log() if OUTPUT.quiet_prefect else "this console",
    )


@dataclass(frozen=True)
class LaunchedServer:
    """A temporary server's process, started before Prefect's server module was imported."""

    port: int
    process: subprocess.Popen[Any]


def _temporary_server_running() -> bool:
    """Whether this process already runs Prefect's temporary server (`ods demo` runs several flows)."""
    module = sys.modules.get("prefect.server.api.server")
    server = None if module is None else module.SubprocessASGIServer._instances.get(None)
    return bool(server is not None and server.running)


def _launch_watched_uvicorn(port: int) -> LaunchedServer:
    """Start the temporary server's process on ``port`` under :func:`run_watched_uvicorn`.

    The arguments and environment are those of Prefect 3.9's ``SubprocessASGIServer._run_uvicorn_command``;
    only the module run changes.
    """
    import prefect
    from prefect.settings import get_current_settings

    server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    with _server_output() as output:
        process = subprocess.Popen(
            args=[
                sys.executable,
                "-m",
                "ods.orchestration.temporary_server",
                str(os.getpid()),
                "--app-dir",
                str(prefect.__module_path__.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env={
                **os.environ,
                **server_env,
                **get_current_settings().to_environment_variables(exclude_unset=True),
            },
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
        )
    return LaunchedServer(port, process)


@cache
def _watched_server_class() -> type[Any]:
    """Prefect's ``SubprocessASGIServer``, launching uvicorn through :func:`_launch_watched_uvicorn`.

    Instances share Prefect's registry, so ``get_client()`` finds this server. ``adopt`` hands it a process
    already launched: its ``start()`` then waits for that one instead of launching another (and launches a
    new one, on another port, only if that one found its port taken).
    """
    from prefect.server.api.server import SubprocessASGIServer

    class WatchedTemporaryServer(SubprocessASGIServer):
        _launched: subprocess.Popen[Any] | None = None

        def adopt(self, launched: LaunchedServer) -> None:
            self.port = launched.port
            self._launched = launched.process

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            launched, self._launched = self._launched, None
            if launched is not None:
                return launched
            if self.port is None:  # start() chose one before launching
                raise RuntimeError("the temporary server has no port to launch on")
            return _launch_watched_uvicorn(self.port).process

    return WatchedTemporaryServer


def temporary_server_log() -> Path:
    """Where the temporary server's own output goes when Prefect's console output is dropped."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home) / "temporary-server.log"


def _server_output() -> AbstractContextManager[IO[bytes] | None]:
    """The file the temporary server writes to (appended; restarted past 5 MB), or None: this console."""
    if not OUTPUT.quiet_prefect:
        return nullcontext()
    path = temporary_server_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    too_big = path.is_file() and path.stat().st_size > _SERVER_LOG_BYTES
    return path.open("wb" if too_big else "ab")  # the server keeps its own descriptor


def _crash_orphaned_runs() -> None:
    """Mark Crashed the runs that killed `ods` commands left unfinished; never fails the command."""
    from prefect import get_client

    from ods.orchestration.runs import crash_orphaned_runs

    try:
        with get_client(sync_client=True) as client:
            crashed = crash_orphaned_runs(client)
    except Exception as error:  # noqa: BLE001 - bookkeeping of earlier runs must not stop this one
        logger.warning("could not check for runs left by killed ods commands: %s", error)
        return
    if crashed:
        logger.info("marked %d run(s) of killed ods commands Crashed: %s", len(crashed), crashed)


def _without_heartbeats() -> AbstractContextManager[Any]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None:
        return nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _tagged(tags: tuple[str, ...]) -> AbstractContextManager[Any]:
    from prefect import tags as prefect_tags

    return prefect_tags(*tags) if tags else nullcontext()


class _WithoutPrefectRecords(logging.Filter):
    """Drops what Prefect logs to the console (its loggers, and its services' loggers such as
    ``EventsWorker``); other libraries' warnings pass."""

    def __init__(self, prefect_dir: str) -> None:
        super().__init__()
        self._prefect_dir = prefect_dir

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        from_prefect = name == "prefect" or name.startswith("prefect.")
        return not (from_prefect or record.pathname.startswith(self._prefect_dir))


def _quiet_prefect_console() -> None:
    """Prefect's console handlers stop printing Prefect's records for the rest of the process.

    Only the console: the API handler still sends every run log (tracebacks included) to the server.
    A filter, not a level, so the run records still reach other handlers (the ingest progress bar).
    """
    import prefect
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler, _SafeStreamHandler

    ensure_logging_setup()  # the handlers exist before `import prefect.main` would make them
    prefect_dir = str(prefect.__module_path__) + os.sep
    for name in ("", "prefect._internal"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler | _SafeStreamHandler) and not any(
                isinstance(existing, _WithoutPrefectRecords) for existing in handler.filters
            ):
                handler.addFilter(_WithoutPrefectRecords(prefect_dir))


# -- the watchdog: the temporary server's process -------------------------------------------------------

POLL_S = 0.5
GRACE_S = 10.0


def watch_parent(parent_pid: int, *, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Return only by ending this process, once its parent is no longer ``parent_pid``."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown: Prefect's services stop
    time.sleep(grace_s)
    os._exit(1)


def run_watched_uvicorn(argv: Sequence[str]) -> None:
    """Watch the parent named first in ``argv``, then run uvicorn with the rest.

    This runs uvicorn exactly as ``python -m uvicorn UVICORN_ARGS...`` would (how Prefect launches its
    temporary server), plus a thread that watches the parent. A command that ends normally stops its
    server itself; one killed outright (SIGKILL, the OOM killer) cannot, and its server would run on with
    PPID 1. Once the parent is gone (the server is re-parented), the watchdog asks uvicorn to stop
    (SIGTERM) and, after a grace, exits at once. Polling the parent's pid works from any thread of the
    parent, where a parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that started the
    server ends.
    """
    parent_pid, *uvicorn_args = argv
    threading.Thread(
        target=watch_parent, args=(int(parent_pid),), name="parent-watchdog", daemon=True
    ).start()
    sys.argv = ["uvicorn", *uvicorn_args]
    runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_watched_uvicorn(sys.argv[1:])
