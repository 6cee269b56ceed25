"""No module imports another module's private names (``_name``): stages, the CLI, tasks and flows reach each
other only through public functions. import-linter checks which modules import which; this checks names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ods", "tasks", "flows", "deployments")


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            parts = node.module.split(".")
            names = [alias.name for alias in node.names]
            private = [
                name for name in (*parts, *names) if name.startswith("_") and not name.startswith("__")
            ]
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}: {name}" for name in private]
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    sources = [
        *(ROOT / "src" / "ods").rglob("*.py"),
        *(path for package in PACKAGES[1:] for path in (ROOT / package).rglob("*.py")),
    ]

    found = [item for path in sources for item in _private_imports(path)]

    assert len(sources) > 100
    assert not found, "private names imported across modules:\n" + "\n".join(found)
