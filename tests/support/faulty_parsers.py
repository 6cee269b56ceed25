"""Parse functions that misbehave on purpose, injected into ``DocumentParserPool`` by the isolation tests.

They live at module level so the worker process can import them by name.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from ods.adapters.documents.parsers import parse_document
from ods.domain.documents import ParsedDocument, Section

HEAVY_MODULES = ("prefect", "torch", "transformers", "sentence_transformers", "pandas", "pymilvus")


def parse_or_misbehave(data: bytes, name: str, *, max_pages: int) -> ParsedDocument:
    """``parse_document``, except for documents named hang.*, bomb.*, crash.* and modules.*."""
    stem = name.partition(".")[0]
    if stem == "hang":
        while True:
            time.sleep(0.05)
    if stem == "bomb":
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
    if stem == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if stem == "modules":
        loaded = sorted({module.partition(".")[0] for module in sys.modules} & set(HEAVY_MODULES))
        return ParsedDocument((Section(" ".join(loaded) or "none"),), parser="modules")
    return parse_document(data, name, max_pages=max_pages)
