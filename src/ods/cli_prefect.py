"""How the `ods` commands that run a flow run it: Prefect's temporary server started early, no heartbeats.

With no ``PREFECT_API_URL``, Prefect starts a temporary API server the first time a flow run needs one: a
subprocess that imports Prefect's server and starts in ~4 s while the command waits, and that stops when
the command ends. :func:`start_flow_runner` starts it in the background before the command imports its
flow (pandas, the ods modules, the tasks), so the two overlap.

On that temporary server, flow runs send no heartbeats. Heartbeats let a server mark a run whose process
died as crashed, but a temporary server dies with the process, so nothing could ever read them; and a
sync flow run waits at its end for the heartbeat thread's current 1-second sleep. A configured server
(``PREFECT_API_URL``) gets Prefect's settings unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ParamSpec, TypeVar

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


class FlowRunner:
    """Runs flows once the Prefect API they need is up; see :func:`start_flow_runner`.

    Given a temporary ``server`` (not started), it starts it at once in a background thread.
    """

    def __init__(self, server: Any | None = None) -> None:
        self._failure: Exception | None = None
        self._server_started: threading.Thread | None = None
        if server is not None:
            self._server_started = threading.Thread(
                target=self._start, args=(server,), name="prefect-temporary-server", daemon=True
            )
            self._server_started.start()

    def run(
        self, flow: Callable[Parameters, Result], *args: Parameters.args, **kwargs: Parameters.kwargs
    ) -> Result:
        """``flow(*args, **kwargs)`` once the temporary server answers (re-raising what starting it
        raised), with heartbeats off when it runs on that server."""
        if self._server_started is None:
            return flow(*args, **kwargs)
        self._server_started.join()
        if self._failure is not None:
            raise self._failure
        with _without_heartbeats():
            return flow(*args, **kwargs)

    def _start(self, server: Any) -> None:
        try:
            server.start()
        except Exception as error:  # noqa: BLE001 - re-raised in the command's thread by run()
            self._failure = error


def start_flow_runner() -> FlowRunner:
    """Start Prefect's temporary server in the background when flows will need one, and return the
    runner to run them with. Where a Prefect API is configured (or the temporary server is turned off),
    the runner just calls the flow."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return FlowRunner()
    # Prefect's own launcher: flows that ask for the API later get this same server.
    from prefect.server.api.server import SubprocessASGIServer

    return FlowRunner(SubprocessASGIServer())


def _without_heartbeats() -> AbstractContextManager[Any]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None:
        return nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
