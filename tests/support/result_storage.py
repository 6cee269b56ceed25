"""What Prefect left in a result storage folder: every file must be JSON, none a pickle."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Pickle protocol 4 and 5 streams start with \x80\x04\x95 / \x80\x05\x95: base64 "gASV" / "gAWV".
_PICKLE_MARKERS = (
    re.compile(rb"gA[SW]V"),
    re.compile(rb'"type":\s*"pickle"'),
    re.compile(rb"^\x80[\x02-\x05]"),
)


def pickled_or_not_json(root: Path) -> dict[str, str]:
    """Each file under ``root`` that holds a pickle (raw, base64 or named as the serializer) or is not
    JSON, with why."""
    found: dict[str, str] = {}
    for path in sorted(item for item in root.rglob("*") if item.is_file()):
        data = path.read_bytes()
        name = str(path.relative_to(root))
        if any(marker.search(data) for marker in _PICKLE_MARKERS):
            found[name] = f"pickle: {data[:120]!r}"
            continue
        try:
            json.loads(data)
        except ValueError:
            found[name] = f"not JSON: {data[:120]!r}"
    return found
