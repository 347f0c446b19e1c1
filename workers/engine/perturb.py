"""Scoring many perturbed copies of one sequence at once, for the perturbation methods.

The reference library runs one forward per perturbed copy *and* per step. Here one forward over a copy of
the whole sequence (cut after the chunk's last step) scores every step of the chunk: causal masking makes
the logits at decoder position `p - 1` depend on the prefix `[:p]` only, and the encoder-decoder source is
read by every step. Copies are batched through the model as far as a memory budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from transformers import PreTrainedModel

from workers.engine.model_io import SequenceIO, config_int, dropout_active
from workers.types import ChunkForwards, ScoreFn

PERTURB_BUDGET_BYTES = 512 * 2**20
"""Memory allowed for one batched no-grad forward of perturbed copies (activations and logits)."""

MAX_COPIES_PER_FORWARD = 256
"""Cap on the copies of one forward: past it a bigger batch buys no speed, only memory."""

Embeds = tuple[torch.Tensor, ...]


def copies_per_forward(io: SequenceIO, logit_positions: int) -> int:
    """How many copies of the sequence fit one no-grad forward, from a rough per-copy estimate: one
    layer's activations at a time (no graph is kept) plus the logits and the step function's temporaries."""
    config = io.model.config.get_text_config(decoder=True)
    hidden = config_int(config, "hidden_size", "d_model", default=512)
    inner = config_int(config, "intermediate_size", "d_ff", default=4 * hidden)
    heads = config_int(config, "num_attention_heads", "num_heads", default=8)
    vocab = config_int(config, "vocab_size", default=32_000)
    length = io.target_ids.shape[1] + (io.source_ids.shape[1] if io.is_encoder_decoder else 0)
    per_copy = 4 * (2 * length * (6 * hidden + inner + heads * length) + 3 * logit_positions * vocab)
    return max(1, min(PERTURB_BUDGET_BYTES // per_copy, MAX_COPIES_PER_FORWARD))


def prefix(embeds: Embeds, positions: list[int]) -> Embeds:
    """Cut the target side (the last input) after the chunk's last step: nothing later reaches its outputs."""
    return (*embeds[:-1], embeds[-1][:, : max(positions)])


def score_copies(
    io: SequenceIO,
    n_copies: int,
    make_copies: Callable[[int, int], Embeds],
    positions: list[int],
    attributed_fn: ScoreFn,
) -> torch.Tensor:
    """The attributed function of every step for every copy, `[n_copies, n_steps]` (float32).

    Args:
        io: the sequence and model.
        n_copies: how many copies there are.
        make_copies: `(start, stop)` → the inputs of copies `start..stop-1`, each `[stop - start, length,
            hidden]` (a copy of the unperturbed side may be a batch-1 tensor: it is expanded).
        positions: the chunk's attributed positions, each scored from every copy.
        attributed_fn: the attributed function bound to these steps.
    """
    per_forward = copies_per_forward(io, len(positions))
    parts = []
    with torch.no_grad():
        for start in range(0, n_copies, per_forward):
            stop = min(n_copies, start + per_forward)
            embeds = tuple(e.expand(stop - start, -1, -1) for e in make_copies(start, stop))

            def again(embeds: Embeds = embeds) -> torch.Tensor:
                with dropout_active(io.model):
                    return io.forward(embeds, positions).logits

            logits = io.forward(embeds, positions).logits
            parts.append(attributed_fn(logits, ChunkForwards(embeds, again)).float())
    return torch.cat(parts)


# ---------------------------------------------------------------------------------------------------------
# Sliding windows (occlusion)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Captum's occlusion windows over `length` tokens: starts 0, stride, ... while a window still has to
    move (`ceil((length - window) / stride) + 1` of them); the last may stick out and is cut at the end. A
    window longer than the input covers it once (captum refuses that case)."""
    return [k * stride for k in range(math.ceil(max(length - window, 0) / stride) + 1)]


def window_average(
    diffs: torch.Tensor, starts: list[int], lengths: list[int], window: int, stride: int, n_rows: int
) -> torch.Tensor:
    """Each position's mean output difference over the windows covering it, per step (captum's weights).

    Args:
        diffs: `[len(starts), n_steps]`: original output - occluded output, per window start and step.
        starts: window starts (those of the longest step; a step uses the first few, see `window_starts`).
        lengths: per step, the length of the input it reads (its prefix, or the whole source).
        window: tokens per window.
        stride: tokens between window starts.
        n_rows: positions returned.

    Returns:
        `[n_rows, n_steps]`; NaN where no window of a step covers the position (at or past its input).
    """
    device = diffs.device
    start = torch.tensor(starts, device=device)
    rows = torch.arange(n_rows, device=device)
    covers = ((rows[None, :] >= start[:, None]) & (rows[None, :] < start[:, None] + window)).double()
    used_count = torch.tensor([len(window_starts(n, window, stride)) for n in lengths], device=device)
    used = (torch.arange(len(starts), device=device)[:, None] < used_count[None, :]).double()
    inside = (rows[:, None] < torch.tensor(lengths, device=device)[None, :]).double()
    total = covers.T @ (diffs.double() * used) * inside  # [n_rows, n_steps]
    count = covers.T @ used * inside
    return (total / count).float()  # 0 / 0 = NaN where nothing covers


# ---------------------------------------------------------------------------------------------------------
# Weighted ridge regression (LIME's surrogate)


def weighted_ridge(
    features: torch.Tensor, outputs: torch.Tensor, weights: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Coefficients of scikit-learn's `Ridge(alpha).fit(X, y, sample_weight=w)` (with intercept), batched.

    Minimises `sum_s w_s (y_s - b - x_s . beta)^2 + alpha |beta|^2`: features and outputs are centred on their
    weighted means (which fixes the intercept), then the normal equations are solved in float64.

    Args:
        features: `[batch, n_samples, n_features]`.
        outputs: `[batch, n_samples]`.
        weights: `[batch, n_samples]`, non-negative.

    Returns:
        `[batch, n_features]` (float64).
    """
    x, y, w = features.double(), outputs.double(), weights.double()
    total = w.sum(dim=1, keepdim=True).clamp_min(1e-300)
    x_mean = (w[..., None] * x).sum(dim=1, keepdim=True) / total[..., None]
    y_mean = (w * y).sum(dim=1, keepdim=True) / total
    root = w.sqrt()
    xw = (x - x_mean) * root[..., None]  # weighted least squares = plain least squares on sqrt(w)-scaled rows
    yw = ((y - y_mean) * root)[..., None]
    n_samples, n_features = x.shape[-2:]
    if n_samples < n_features:  # the kernel form solves the smaller system, as scikit-learn does
        eye = torch.eye(n_samples, dtype=x.dtype, device=x.device)
        return (xw.transpose(1, 2) @ torch.linalg.solve(xw @ xw.transpose(1, 2) + alpha * eye, yw)).squeeze(
            -1
        )
    eye = torch.eye(n_features, dtype=x.dtype, device=x.device)
    return torch.linalg.solve(xw.transpose(1, 2) @ xw + alpha * eye, xw.transpose(1, 2) @ yw).squeeze(-1)


# ---------------------------------------------------------------------------------------------------------
# Per-row logits (ReAGent): each copy reads one step's logits


def length_chunks(lengths: list[int], max_rows: int, waste: float = 0.25) -> list[tuple[int, int]]:
    """Split rows (sequences of `lengths` tokens, best sorted) into consecutive batches `(start, stop)` of at
    most `max_rows`, each padded to its longest row, with padding kept under `waste` of the real tokens."""
    chunks: list[tuple[int, int]] = []
    lo, total, longest = 0, 0, 0
    for i, n in enumerate(lengths):
        rows, top = i - lo + 1, max(longest, n)
        if i > lo and (rows > max_rows or rows * top > (1 + waste) * (total + n)):
            chunks.append((lo, i))
            lo, total, top = i, 0, n
        total, longest = total + n, top
    chunks.append((lo, len(lengths)))
    return chunks


@contextmanager
def head_reads_rows(model: PreTrainedModel, rows: torch.Tensor) -> Iterator[None]:
    """The LM head computes, for batch row b, only the logits at decoder position `rows[b]` (the model returns
    logits `[batch, 1, vocab]`): copies of different steps share one forward without paying the head on every
    position. Applied to the head's input, so models' extra logit processing still applies."""

    def pre_hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        hidden = args[0]
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), rows.to(hidden.device)]
        return (picked[:, None], *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def ids_logits(
    io: SequenceIO, ids: tuple[torch.Tensor, ...], rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of the model on token ids (`(target,)` or `(source, target)`, `[batch, length]` each).

    With `rows` (`[batch]` decoder positions), `[batch, vocab]`: row b's logits at `rows[b]`; without,
    `[batch, target length, vocab]`.
    """
    model = io.model
    ones = [torch.ones_like(t) for t in ids]
    with torch.no_grad(), head_reads_rows(model, rows) if rows is not None else nullcontext():
        if io.is_encoder_decoder:
            out = model(
                input_ids=ids[0],
                attention_mask=ones[0],
                decoder_input_ids=ids[1],
                decoder_attention_mask=ones[1],
                use_cache=False,
            )
        else:
            out = model(input_ids=ids[0], attention_mask=ones[0], use_cache=False)
    logits = out.logits
    return logits[:, 0] if rows is not None else logits
