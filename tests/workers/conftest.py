"""Fixtures for engine tests: the tiny models loaded by the worker's loader, and (for parity tests) the same
models wrapped by the reference library, Inseq, which is only ever used here as a test oracle.

Imports of `workers` and `inseq` happen inside the fixtures, so that a missing piece fails the tests that need
it and not the collection of the whole folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_entries(tiny_registry: Path) -> dict[str, Any]:
    """Registry entries (`schemas.models.ModelEntry`) of the tiny models, by id."""
    from schemas.models import read_registry_file

    return read_registry_file(tiny_registry)


@pytest.fixture(scope="session")
def engine_model(
    tiny_entries: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Any]:
    """`engine_model(model_id)` -> the worker's `LoadedModel`, loaded once per session."""
    from workers.model_loading import load_model

    cache_dir = tmp_path_factory.mktemp("model-cache")
    loaded: dict[str, Any] = {}

    def get(model_id: str) -> Any:
        if model_id not in loaded:
            loaded[model_id] = load_model(tiny_entries[model_id], cache_dir)
        return loaded[model_id]

    return get


@pytest.fixture(scope="session")
def run_engine(engine_model: Callable[[str], Any]) -> Callable[..., dict[str, Any]]:
    """`run_engine(model=..., inputs=[...], **request_fields)` -> the engine's result (id "test").

    Progress calls are recorded on the returned dict under the key `"_progress"` (not part of the result).
    """
    from schemas.attribution import AttributionRequest
    from workers.engine.run import run_attribution

    def run(**fields: Any) -> dict[str, Any]:
        request = AttributionRequest(**fields)
        progress: list[tuple[int, int]] = []
        result = run_attribution(
            request,
            engine_model(request.model),
            lambda done, total: progress.append((done, total)),
            result_id="test",
        )
        result["_progress"] = progress
        return result

    return run


@pytest.fixture(scope="session")
def inseq_model(tiny_models: dict[str, Path]) -> Callable[..., Any]:
    """`inseq_model(model_id, method, **load_kwargs)` -> an Inseq attribution model, cached per model, method
    and the method options given to `inseq.load_model` (e.g. `target_layer`, `multiply_by_inputs`)."""
    import logging

    import inseq

    logging.getLogger("inseq").setLevel(logging.ERROR)
    cache: dict[tuple[Any, ...], Any] = {}

    def get(model_id: str, method: str, **load_kwargs: Any) -> Any:
        key = (model_id, method, *sorted(load_kwargs.items()))
        if key not in cache:
            cache[key] = inseq.load_model(
                str(tiny_models[model_id]),
                method,
                device="cpu",
                model_kwargs={"attn_implementation": "eager"},
                **load_kwargs,
            )
        return cache[key]

    return get


@pytest.fixture(scope="module")
def torch_single_thread() -> Any:
    """One torch thread for the module's tests: on tiny models thread hand-offs cost more than the math,
    and on a busy 2-core machine two threads make each call 10-30x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
