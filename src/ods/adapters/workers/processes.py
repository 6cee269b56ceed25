"""Whether a process still runs, asked of the kernel: the one ``os.kill(pid, 0)`` and /proc state read
behind the model servers, the run queues and the scheduled-run cleanup, which each watch processes they
may not have started."""

from __future__ import annotations

import os
from pathlib import Path


def pid_exists(pid: int) -> bool:
    """Whether some process has pid ``pid`` now (a zombie or another user's process counts)."""
    try:
        os.kill(pid, 0)  # signal 0: only the existence and permission checks run
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and is not ours to signal
    return True


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits for its parent to reap it (False when /proc cannot tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
