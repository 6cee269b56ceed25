"""Models loaded once per process and shared by every adapter over the same weights.

Loading a model costs seconds and hundreds of MB (SmolLM2: ~17.7 s from its GGUF, ~3.6 s from the
converted cache, ~500 MB), so the embedder and the LLM adapters keep what they load here, by the folder
(and file) it came from. Filled on first use, never at import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT", bound=Hashable)
ModelT = TypeVar("ModelT")


class LoadedModels(Generic[KeyT, ModelT]):
    """The models of one kind loaded in this process, by key."""

    def __init__(self) -> None:
        self._models: dict[KeyT, ModelT] = {}
        self._lock = threading.Lock()

    def get(self, key: KeyT, load: Callable[[KeyT], ModelT]) -> ModelT:
        """The model for ``key``: ``load(key)`` the first time, under the lock, so threads asking at once
        wait for one load instead of each loading a copy."""
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = load(key)
                self._models[key] = model
            return model

    def keys(self) -> list[KeyT]:
        """The keys of the models loaded so far."""
        with self._lock:
            return list(self._models)
