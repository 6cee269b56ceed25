"""Whether a process still runs, asked of the kernel: the one ``os.kill(pid, 0)`` and /proc state read
behind the model servers, the run queues and the scheduled-run cleanup, which each watch processes they
may not have started; and a free port for a server process about to be launched."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (a server launched on it that finds it taken after all
    exits; its launcher says so or tries another)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


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
