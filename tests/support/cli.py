"""Running the `ods` command as a user does: a real process, its exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_ods(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m ods ARGS` with a wide terminal, in ``cwd``, with extra environment ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "ods", *args],
        env={**os.environ, "COLUMNS": "250", **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
