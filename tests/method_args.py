"""Method arguments that keep a job on a tiny model well under a second, for tests that run every method
(the defaults of ReAGent, say, can probe thousands of rounds)."""

from __future__ import annotations

from typing import Any

FAST_METHOD_ARGS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 8},
    "discretized_integrated_gradients": {"n_steps": 4, "n_neighbors": 5},
    "sequential_integrated_gradients": {"n_steps": 4},
    "layer_integrated_gradients": {"n_steps": 8},
    "gradient_shap": {"n_samples": 4, "seed": 1},
    "lime": {"n_samples": 16, "seed": 1},
    "reagent": {"num_probes": 4, "max_probe_steps": 10, "keep_top_n": 2, "seed": 1},
}


def fast_method_args(method: str) -> dict[str, Any]:
    return dict(FAST_METHOD_ARGS.get(method, {}))
