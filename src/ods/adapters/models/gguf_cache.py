"""A GGUF chat model kept converted to a Hugging Face folder, so only its first load reads the GGUF.

transformers reads a GGUF through gguf-py: for the packaged 98 MB SmolLM2-135M that took ~17.7 s on two
cores (its tokenizer's 49k entries parsed three times, 397 tensor-name maps built, the weights
dequantised), against ~3.6 s for the same model as a folder of safetensors, ~3 s of which are the imports
of torch and transformers (benchmarks/llm_load.py). So the first process that
loads a GGUF writes what it loaded (fp32 weights: the dequantised values exactly, config, tokenizer with
its chat template) into a folder of the cache, checks that the folder loads back to the same weights,
and moves it into place in one rename; every later process loads that folder. The folder is keyed by the
GGUF's path, size and modification time, and the transformers version, so a changed file or library is
converted again. A cache that cannot be written costs only the speed: the GGUF is read as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

_LOG = logging.getLogger(__name__)
CONVERSION_VERSION = "1"  # bump when what is written changes, so older folders are not reused
WEIGHTS = "model.safetensors"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ods/llm`` (``~/.cache/ods/llm``): ~540 MB per 135M-parameter model."""
    from ods.adapters.models.packaged import user_cache_dir

    return user_cache_dir("llm")


def converted_dir(gguf: Path, cache_dir: Path) -> Path:
    """Where ``gguf`` is kept converted: keyed by its path, size and time, the transformers version and
    :data:`CONVERSION_VERSION`."""
    from importlib.metadata import version

    status = gguf.stat()
    facts = [str(gguf.resolve()), str(status.st_size), str(status.st_mtime_ns), version("transformers")]
    key = hashlib.sha256("\n".join([*facts, CONVERSION_VERSION]).encode("utf-8")).hexdigest()[:16]
    return cache_dir / f"{gguf.stem}-{key}"


def load_converted(folder: Path) -> tuple[Any, Any] | None:
    """(model, tokenizer) from a converted ``folder``, or None when there is none yet.

    A folder that is there but does not load (a disk error, a file removed by hand) is logged and
    skipped: the caller reads the GGUF instead, and a later conversion replaces the folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / WEIGHTS).is_file():
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        _LOG.warning("cannot load the converted model in %s (%s); reading the GGUF instead", folder, error)
        return None
    return model, tokenizer


def store_converted(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write ``model`` and ``tokenizer`` (loaded from a GGUF) into ``folder``, checked and in one rename,
    so processes converting at once never read half a folder. Raises OSError when it cannot."""
    from safetensors.torch import save_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-", suffix=".partial"))
    try:
        # save_pretrained refuses a model loaded from a GGUF (it counts as quantized, though its
        # weights are plain fp32 by now), so the weights and the config are written as it would.
        save_model(model, str(partial / WEIGHTS))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (partial / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        model.generation_config.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        _check_weights(model, partial)
        # mkdtemp's 0700 (and the weights' 0600) would keep other users of a shared cache out
        for path in partial.iterdir():
            path.chmod(0o644)
        partial.chmod(0o755)
        try:
            partial.rename(folder)
        except OSError:
            if not (folder / WEIGHTS).is_file():
                raise
            # another process converted the same file first: its folder is as good as this one
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_weights(model: Any, folder: Path) -> None:
    """Raise OSError unless the weights written to ``folder`` are the loaded model's, bit for bit.

    A weight the model shares with another (the output layer tied to the embeddings) is written once,
    under one of its names; it is compared through that name."""
    import torch
    from safetensors.torch import load_file

    written = load_file(str(folder / WEIGHTS))
    expected = model.state_dict()
    stored_as = {tensor.data_ptr(): name for name, tensor in expected.items() if name in written}
    wrong = [
        name
        for name, tensor in expected.items()
        if (stored := written.get(name, written.get(stored_as.get(tensor.data_ptr(), "")))) is None
        or not torch.equal(stored, tensor)
    ]
    if wrong or set(written) - set(expected):
        raise OSError(f"the weights written to {folder} differ from the loaded ones: {wrong[:3]}")
