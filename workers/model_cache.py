"""The worker's model cache: registered models, loaded on first use and kept for the life of the worker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from schemas.errors import UnknownModelError
from schemas.models import ModelEntry
from workers.model_loading import load_model
from workers.types import LoadedModel


class ModelCache:
    """Registered models, loaded on first use and kept for the life of the worker."""

    def __init__(
        self,
        registry: dict[str, ModelEntry],
        cache_dir: Path,
        device: str = "cpu",
        on_load: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.device = device
        self.on_load = on_load
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> LoadedModel:
        if model_id not in self.registry:
            raise UnknownModelError(model_id, list(self.registry))
        with self._lock:
            if model_id not in self._loaded:
                self._loaded[model_id] = load_model(self.registry[model_id], self.cache_dir, self.device)
                if self.on_load is not None:
                    self.on_load(model_id)
            return self._loaded[model_id]

    def loaded_ids(self) -> list[str]:
        return list(self._loaded)
