"""Prefect's temporary API server, stopped when the ``ods`` command that started it is gone.

``python -m ods.prefect_server_watchdog PARENT_PID UVICORN_ARGS...`` runs uvicorn exactly as
``python -m uvicorn UVICORN_ARGS...`` would (how Prefect launches its temporary server), plus a thread
that watches the parent. A command that ends normally stops its server itself; one killed outright
(SIGKILL, the OOM killer) cannot, and its server would run on with PPID 1. Once the parent is gone (the
server is re-parented), the watchdog asks uvicorn to stop (SIGTERM) and, after a grace, exits at once.
Polling the parent's pid works from any thread of the parent, where a parent-death signal
(PR_SET_PDEATHSIG) fires when the *thread* that started the server ends.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Sequence

POLL_S = 0.5
GRACE_S = 10.0


def watch_parent(parent_pid: int, *, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Return only by ending this process, once its parent is no longer ``parent_pid``."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown: Prefect's services stop
    time.sleep(grace_s)
    os._exit(1)


def main(argv: Sequence[str]) -> None:
    """Watch the parent named first in ``argv``, then run uvicorn with the rest."""
    parent_pid, *uvicorn_args = argv
    threading.Thread(
        target=watch_parent, args=(int(parent_pid),), name="parent-watchdog", daemon=True
    ).start()
    sys.argv = ["uvicorn", *uvicorn_args]
    runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
