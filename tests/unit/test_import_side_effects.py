"""Importing the library, the flows and the tasks connects to nothing, reads no settings, loads no model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import importlib, pkgutil, sys
import ods, flows, tasks, deployments
for package in (ods, flows, tasks, deployments):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.endswith("__main__") or ".migrations." in module.name:
            continue
        importlib.import_module(module.name)
heavy = sorted(name for name in ("torch", "sentence_transformers", "transformers", "minio", "psycopg")
               if name in sys.modules)
print("HEAVY", heavy)
from ods.settings import get_settings
print("CACHED", get_settings.cache_info().currsize)
"""


def test_importing_every_module_has_no_side_effects(tmp_path: Path) -> None:
    home = tmp_path / "home-that-must-not-appear"
    env = {
        **os.environ,
        "ODS_HOME": str(home),
        # Unreachable services and even invalid values: importing must not notice them.
        "ODS_CATALOG__URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "ODS_MILVUS__URI": "http://127.0.0.1:1",
        "ODS_OBJECT_STORE__KIND": "not-a-kind",
    }

    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "HEAVY []" in completed.stdout
    assert "CACHED 0" in completed.stdout
    assert not home.exists()
