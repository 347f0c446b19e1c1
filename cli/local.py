"""`seqattr attribute --local`: the engine in this process, without Redis or the API, for one-off use.

The model comes from the same registry as the workers' (the built-in one plus `SEQATTR_MODELS`), loaded as a
worker loads it (`SEQATTR_DEVICE`, `SEQATTR_DATA_DIR` for converted weights, `SEQATTR_TORCH_THREADS`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import torch
from pydantic import ValidationError
from transformers.utils import logging as transformers_logging

from cli.errors import ConfigurationError
from schemas.attribution import AttributionRequest
from schemas.defaults import EXPORT_CHUNK_BYTES
from schemas.errors import UnknownModelError
from schemas.exports import ExportFormat
from schemas.models import RegistryError, load_registry
from schemas.results import AttributionResult
from service.exports.csv_export import render_csv
from service.exports.inseq_export import render_inseq
from workers.engine.run import run_attribution
from workers.model_loading import load_model
from workers.settings import WorkerSettings
from workers.types import LoadedModel, ProgressFn


class LocalEngine:
    """The engine in this process, set up from the environment as a worker is (`WorkerSettings`).

    Raises:
        ConfigurationError: invalid `SEQATTR_*` settings, or a registry file that cannot be read.
    """

    def __init__(self) -> None:
        # Built here, not through the cached `get_worker_settings()`: each run reads the environment afresh.
        try:
            self.settings = WorkerSettings()
            self.registry = load_registry(self.settings.models)
        except (ValidationError, RegistryError) as exc:
            raise ConfigurationError(f"invalid configuration: {exc}") from None

    def load(self, model_id: str) -> LoadedModel:
        """The registered model, loaded as a worker loads it.

        Raises:
            UnknownModelError: the id is not in the registry.
            schemas.errors.ModelLoadError: the model cannot be loaded.
        """
        if model_id not in self.registry:
            raise UnknownModelError(model_id, list(self.registry))
        # Our own progress bar is on screen: transformers' weight-loading bar would interleave with it.
        transformers_logging.disable_progress_bar()
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        return load_model(self.registry[model_id], self.settings.model_cache_dir, self.settings.device)

    def attribute(
        self, request: AttributionRequest, loaded: LoadedModel, on_progress: ProgressFn
    ) -> AttributionResult:
        """The result a worker would store for the request.

        Raises:
            schemas.errors.SeqattrError: what the job would have failed with.
        """
        job_id = uuid.uuid4().hex
        return run_attribution(request, loaded, on_progress, job_id, max_cost=self.settings.max_job_cost)


def export_bytes(result: AttributionResult, request: AttributionRequest, fmt: ExportFormat) -> bytes:
    """The export the API would serve for this result (`GET /v1/jobs/{id}/result?format=`)."""
    if fmt is ExportFormat.JSON:
        return orjson.dumps(result)
    if fmt is ExportFormat.CSV:
        return b"".join(render_csv(result, None, EXPORT_CHUNK_BYTES))
    return "".join(render_inseq(result, request.model_dump(mode="json"), None)).encode()


def as_dict(result: AttributionResult) -> dict[str, Any]:
    """The result as the plain dict the renderer takes (the same data the API's JSON export has)."""
    return orjson.loads(orjson.dumps(result))
