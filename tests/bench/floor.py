"""The floor of a benchmark case: the arithmetic a method cannot avoid, over the matmul throughput measured in
the same run.

Throughput: the child that times a case also times float32 (the model's dtype) matrix products of the model's
own shapes, `[rows, hidden] x [hidden, intermediate]`, `[rows, intermediate] x [intermediate, hidden]` and
`[rows, hidden] x [hidden, hidden]`, in the same process, with the same threads, on the same device, right
after its timed runs; rows are the case's sequence length and 16 copies of it (a batched chunk). The best
FLOP/s of the two is the rate the floor assumes: the arithmetic below done at the speed of the model's own
matmuls.

Arithmetic of a decoder-only model over one sequence of `T` tokens, `P` of them the prompt; step `t`
(`P <= t < T`) predicts token `t` from its prefix of `t` tokens, so there are `n = T - P` steps.

- A forward of `k` positions whose context is `c` positions (`k <= c`, the `k` last of them new):
  `2 * n_params_nonembedding * k + 4 * n_layers * hidden * k * c` (the weights' matmuls, then attention's
  scores and weighted values); a full forward over `L` tokens is `k = c = L`. The LM head counts only where
  logits are needed: `2 * hidden * vocab` per position.
- An input-gradient pass for one step's output over its prefix of `t` tokens: the same arithmetic as the
  forward over that prefix plus the LM head at one position (each matmul's input gradient is one matmul of the
  same size; no weight gradients are needed).
- One clean forward over the whole sequence with logits at the `n` steps gives the outputs, the step scores
  and, since the model is causal, every prefix's activations. A generating job needs the same forward, done by
  the generation itself, so its floor is the forced case's. Methods that read no output (`attention`,
  `value_zeroing`) skip the LM head when no step score is asked for and the target is forced.
- A contrastive attributed function adds one forward of the contrast sequence.

Per method (`K` = `n_steps` or `n_samples`):
- `saliency`, `input_x_gradient`, `layer_gradient_x_activation`: clean forward + one input-gradient pass per
  step.
- `deeplift`, `layer_deeplift`: plus one forward of the baseline sequence (the rescale rule needs its
  activations).
- `integrated_gradients`, `layer_integrated_gradients`, `discretized_integrated_gradients`, `gradient_shap`:
  clean forward + per point of the path (or random sample), one forward of the whole interpolated sequence
  (shared by every step: the interpolation of a prefix is the prefix of the interpolation) + one
  input-gradient pass per step. For `gradient_shap` this assumes the samples are shared by the steps (each
  step still sees `K` random points over its own prefix); drawing separate points per step costs a forward per
  step and sample more.
- `sequential_integrated_gradients`: per token `i` and point, one forward of the positions from `i` on (the
  tokens before `i` are unchanged) + per step after `i`, an input-gradient pass over positions `i` to the
  step.
- `occlusion` (window `w`, stride `s`): per occluded window, one forward of the positions from the window on
  (shared by every later step), logits at the steps that see the whole window. Exact for `w = 1`.
- `lime`: clean forward + one forward per sample (masks shared by the steps, as for `gradient_shap`).
- `value_zeroing`: clean forward + per zeroed token `j` and layer, that layer's output recomputed at the
  positions from `j` on (attention output and MLP: the layer input, queries and keys are unchanged).
- `dummy`: the clean forward.
- `reagent`: no floor; the number of probe rounds depends on when its stopping condition is met.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

BATCH_ROWS = 16
"""The second row count of the throughput measurement: a chunk of this many sequence copies."""
MIN_TIMING_S = 0.2
"""Each shape is multiplied repeatedly for at least this long."""


@dataclass(frozen=True)
class ModelDims:
    """What the arithmetic needs of a decoder-only model."""

    n_layers: int
    hidden: int
    intermediate: int
    vocab: int
    n_params_nonembedding: int
    qkv_params: int
    """Weights of the query, key and value projections, all layers together."""

    @classmethod
    def of(cls, model: Any) -> ModelDims:
        """From a loaded transformers model (Llama-style config names, GPT-2's as fallbacks)."""
        config = model.config
        hidden = _first(config, "hidden_size", "n_embd", "d_model")
        n_layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
        n_heads = _first(config, "num_attention_heads", "n_head")
        n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
        head_dim = getattr(config, "head_dim", None) or hidden // n_heads
        intermediate = (
            getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
        )
        embeddings = {id(p) for p in model.get_input_embeddings().parameters()}
        output = model.get_output_embeddings()
        if output is not None:
            embeddings |= {id(p) for p in output.parameters()}
        position = getattr(getattr(model, "transformer", None), "wpe", None)  # GPT-2's learned positions
        if position is not None:
            embeddings |= {id(p) for p in position.parameters()}
        nonembedding = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
        return cls(
            n_layers=n_layers,
            hidden=hidden,
            intermediate=intermediate,
            vocab=int(config.vocab_size),
            n_params_nonembedding=nonembedding,
            qkv_params=n_layers * hidden * (n_heads + 2 * n_kv_heads) * head_dim,
        )


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(f"model config has none of {names}")


# ---------------------------------------------------------------------------------------------------------
# Arithmetic


def span_flops(dims: ModelDims, k: int, context: int) -> float:
    """A forward of `k` new positions over a context of `context` positions, without the LM head."""
    return 2.0 * dims.n_params_nonembedding * k + 4.0 * dims.n_layers * dims.hidden * k * context


def head_flops(dims: ModelDims, positions: int) -> float:
    return 2.0 * dims.hidden * dims.vocab * positions


def forward_flops(dims: ModelDims, length: int, logits: int) -> float:
    """A forward over `length` tokens with logits at `logits` positions."""
    return span_flops(dims, length, length) + head_flops(dims, logits)


def gradient_pass_flops(dims: ModelDims, prefix: int, start: int = 0) -> float:
    """The input gradient of one step's output (logits at its last position) down to position `start`."""
    return span_flops(dims, prefix - start, prefix) + head_flops(dims, 1)


OUTPUT_FREE = {"attention", "value_zeroing"}
"""Methods whose scores read no logits."""
PATH_METHODS = {
    "integrated_gradients": "n_steps",
    "layer_integrated_gradients": "n_steps",
    "discretized_integrated_gradients": "n_steps",
    "gradient_shap": "n_samples",
}
"""Methods costing a forward + an input-gradient pass per step for each of K points; the argument giving K."""
DEFAULT_POINTS = {"n_steps": 50, "n_samples": 5}


def method_flops(
    method: str,
    method_args: dict[str, Any],
    dims: ModelDims,
    prompt_len: int,
    total_len: int,
    *,
    logits_needed: bool = True,
    contrast: bool = False,
) -> float | None:
    """The floor arithmetic of one case (module docstring); None where there is no floor (`reagent`).

    `logits_needed`: step scores are asked for or the target is generated."""
    T, steps = total_len, range(prompt_len, total_len)
    n = len(steps)
    clean = forward_flops(dims, T, n if logits_needed or method not in OUTPUT_FREE else 0)
    if contrast:
        clean += forward_flops(dims, T, n)
    gradients = sum(gradient_pass_flops(dims, t) for t in steps)
    if method in ("saliency", "input_x_gradient", "layer_gradient_x_activation"):
        return clean + gradients
    if method in ("deeplift", "layer_deeplift"):
        return clean + span_flops(dims, T, T) + gradients
    if method in PATH_METHODS:
        name = PATH_METHODS[method]
        points = int(method_args.get(name, DEFAULT_POINTS[name]))
        return clean + points * (forward_flops(dims, T, n) + gradients)
    if method == "sequential_integrated_gradients":
        points = int(method_args.get("n_steps", DEFAULT_POINTS["n_steps"]))
        per_point = sum(
            span_flops(dims, T - i, T)
            + head_flops(dims, sum(1 for t in steps if t > i))
            + sum(gradient_pass_flops(dims, t, start=i) for t in steps if t > i)
            for i in range(T - 1)
        )
        return clean + points * per_point
    if method == "attention" or method == "dummy":
        return clean
    if method == "occlusion":
        return clean + _occlusion_flops(dims, T, steps, method_args)
    if method == "lime":
        return clean + int(method_args.get("n_samples", 50)) * forward_flops(dims, T, n)
    if method == "value_zeroing":
        after_qkv = dims.n_params_nonembedding - dims.qkv_params
        return clean + sum(2.0 * after_qkv * (T - j) for j in range(T))
    return None


def _occlusion_flops(dims: ModelDims, total_len: int, steps: range, method_args: dict[str, Any]) -> float:
    window, stride = int(method_args.get("sliding_window", 1)), int(method_args.get("stride", 1))
    flops = 0.0
    for start in range(0, total_len - window, stride):
        seeing = sum(1 for t in steps if t >= start + window)
        if seeing:
            flops += span_flops(dims, total_len - start, total_len) + head_flops(dims, seeing)
    return flops


# ---------------------------------------------------------------------------------------------------------
# Throughput


def matmul_throughput(dims: ModelDims, length: int, device: str, dtype: Any) -> dict[str, Any]:
    """FLOP/s of the model's matmul shapes at `length` and `BATCH_ROWS * length` rows (module docstring)."""
    import torch

    shapes = [(dims.hidden, dims.intermediate), (dims.intermediate, dims.hidden), (dims.hidden, dims.hidden)]
    by_rows: dict[int, float] = {}
    for rows in (length, BATCH_ROWS * length):
        flops, seconds = 0.0, 0.0
        for inner, outer in shapes:
            a = torch.randn(rows, inner, device=device, dtype=dtype)
            b = torch.randn(inner, outer, device=device, dtype=dtype)
            torch.matmul(a, b)  # warm-up
            count, elapsed = _timed_matmuls(a, b, device)
            flops += 2.0 * rows * inner * outer * count
            seconds += elapsed
        by_rows[rows] = flops / seconds
    return {"flops_per_s": max(by_rows.values()), "by_rows": by_rows}


def _timed_matmuls(a: Any, b: Any, device: str) -> tuple[int, float]:
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    count, batch = 0, 1
    sync()
    started = time.perf_counter()
    while True:
        for _ in range(batch):
            torch.matmul(a, b)
        count += batch
        sync()
        elapsed = time.perf_counter() - started
        if elapsed >= MIN_TIMING_S:
            return count, elapsed
        batch *= 2
