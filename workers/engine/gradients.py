"""Gradients of every attributed step in one batched backward.

A naive engine runs one forward + backward per generated token. Here one forward over the whole sequence
yields every step's output, and the per-step gradients come in two stages:

1. the LM head's input is cut from the graph (a detached leaf), so one cheap backward through the head gives,
   for every step at once, d output_p / d hidden_{p-1} (each step reads only its own position);
2. those vectors are sent back through the transformer body with `is_grads_batched=True` (vmap over the
   backward), one batch row per step, so the vocabulary-sized head is never part of the batched backward.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

from workers.engine.model_io import SequenceIO, config_int, dropout_active
from workers.types import ChunkForwards, ScoreFn

logger = logging.getLogger(__name__)

GRAD_ROW_BUDGET_BYTES = 768 * 2**20
"""Memory allowed for the batched backward's per-step rows; sets how many steps share one backward."""

MAX_BATCHED_SEQUENCES = 256
"""Cap on steps x copies in one batched backward: past it the element-wise work turns memory-bound and
gets slower per row (measured on CPU with integrated gradients: 5 steps x 50 copies beat 10 x 50 by ~20%)."""


class _HeadInput:
    """The LM head's input as seen by the graph (`graph`) and as a detached leaf (`leaf`)."""

    _graph: torch.Tensor | None = None
    _leaf: torch.Tensor | None = None

    def capture(self, graph: torch.Tensor) -> torch.Tensor:
        """The leaf to use in place of the head's input; only the block's first forward is routed (later
        ones, such as noisy or contrastive forwards, keep their graph)."""
        if self._leaf is not None:
            return graph
        self._graph, self._leaf = graph, graph.detach().requires_grad_(True)
        return self._leaf

    @property
    def graph(self) -> torch.Tensor:
        if self._graph is None:
            raise RuntimeError("the model's forward did not call its LM head")
        return self._graph

    @property
    def leaf(self) -> torch.Tensor:
        if self._leaf is None:
            raise RuntimeError("the model's forward did not call its LM head")
        return self._leaf


@contextmanager
def detached_head_input(model: PreTrainedModel) -> Iterator[_HeadInput]:
    """Route the LM head through a detached leaf for the duration of the block (hook always removed)."""
    holder = _HeadInput()

    def pre_hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (holder.capture(args[0]), *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(pre_hook)
    try:
        yield holder
    finally:
        handle.remove()


def rows_per_backward(io: SequenceIO, batch: int) -> int:
    """How many steps fit one batched backward, from a rough per-row activation-gradient estimate."""
    config = io.model.config.get_text_config(decoder=True)
    hidden = config_int(config, "hidden_size", "d_model", default=512)
    inner = config_int(config, "intermediate_size", "d_ff", default=4 * hidden)
    heads = config_int(config, "num_attention_heads", "num_heads", default=8)
    length = io.target_ids.shape[1] + (io.source_ids.shape[1] if io.is_encoder_decoder else 0)
    per_row = 4 * batch * length * (8 * hidden + 4 * inner + 4 * heads * length)
    return max(1, min(GRAD_ROW_BUDGET_BYTES // per_row, MAX_BATCHED_SEQUENCES // batch))


def plan_chunks(positions: list[int], max_rows: int) -> list[list[int]]:
    """Split consecutive step positions into chunks that share one forward and one batched backward.

    A chunk runs on the prefix up to its last step only (causal masking makes later tokens irrelevant), so
    its cost is about `last_position * (2 + rows)`: a forward (plus fixed overhead, counted as another
    forward) and one backward row per step over that prefix. Dynamic programming picks the cheapest split
    with at most `max_rows` steps per chunk.
    """
    n = len(positions)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest plan for the first j steps
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + positions[j - 1] * (2 + j - i)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[list[int]] = []
    j = n
    while j > 0:
        chunks.append(positions[cut[j] : j])
        j = cut[j]
    return chunks[::-1]


def _body_backward(
    graphs: list[torch.Tensor], inputs: list[torch.Tensor], grad_rows: list[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    try:
        return torch.autograd.grad(
            graphs, inputs, grad_outputs=grad_rows, is_grads_batched=True, retain_graph=True
        )
    except torch.cuda.OutOfMemoryError:
        raise  # not a missing batching rule: the job fails as out-of-memory
    except RuntimeError as exc:  # an op without a batching rule: same numbers, one row at a time
        logger.warning("batched backward unavailable (%s); falling back to a per-step loop", exc)
        steps = [
            torch.autograd.grad(graphs, inputs, grad_outputs=[r[j] for r in grad_rows], retain_graph=True)
            for j in range(grad_rows[0].shape[0])
        ]
        return tuple(torch.stack(parts) for parts in zip(*steps, strict=True))


def _step_rows(grad: torch.Tensor, n_steps: int) -> torch.Tensor:
    """`[n_steps, *grad.shape]`: row j keeps step j's slice (dim 1) of a `[batch, n_steps, ...]` gradient."""
    rows = torch.zeros((n_steps, *grad.shape), dtype=grad.dtype, device=grad.device)
    for j in range(n_steps):
        rows[j, :, j] = grad[:, j]
    return rows


def step_gradients(
    io: SequenceIO,
    embeds: tuple[torch.Tensor, ...],
    positions: list[int],
    attributed_fn: ScoreFn,
    weights: torch.Tensor | None = None,
    extra_inputs: Sequence[torch.Tensor] = (),
) -> tuple[torch.Tensor | None, ...]:
    """Gradient of each step's attributed output with respect to each embedding input that requires grad.

    Args:
        io: the sequence and model.
        embeds: inputs `[batch, length, hidden]`; those with `requires_grad` get gradients.
        positions: attributed target positions.
        attributed_fn: the differentiable attributed function, bound to these steps.
        weights: `[batch]` weights summed over the batch (integrated-gradients quadrature); default ones.
        extra_inputs: more tensors to differentiate with respect to, such as a layer's output replaced by a
            leaf in a forward hook (layer methods). Read after the main forward, so such a hook may fill the
            sequence (a list) during it.

    Returns:
        Per input, `[len(positions), batch, length, hidden]` (weighted), or None where no grad was asked;
        then, per extra input, `[len(positions), *extra.shape]`.
    """
    with torch.enable_grad(), detached_head_input(io.model) as head:
        out = io.forward(embeds, positions)
        extras = list(extra_inputs)
        wanted = [e for e in embeds if e.requires_grad] + extras

        def forward_again() -> torch.Tensor:
            # Noisy forwards (Monte Carlo dropout) are constants for the gradient, as in the reference.
            with torch.no_grad(), dropout_active(io.model):
                return io.forward(embeds, positions).logits

        forwards = ChunkForwards(embeds, forward_again)
        scores = attributed_fn(out.logits, forwards)  # [batch, n]
        if not scores.requires_grad:
            # The function does not depend on the attributed inputs (e.g. contrast_prob on forced
            # contrastive inputs of a decoder-only model): every gradient is zero.
            return tuple(
                torch.zeros((len(positions), *e.shape), dtype=e.dtype, device=e.device)
                if e.requires_grad or i >= len(embeds)
                else None
                for i, e in enumerate((*embeds, *extras))
            )
        batch = scores.shape[0]
        w = torch.ones(batch, device=scores.device) if weights is None else weights.to(scores.device)
        # Stage 1: d score_p / d head_input (and / d any tracked output), for all steps at once: each step
        # reads its own rows.
        leaves = [head.leaf, *(leaf for _, leaf in forwards.tracked)]
        head_grad, *tracked_grads = torch.autograd.grad(
            (scores * w[:, None]).sum(), leaves, allow_unused=True
        )
        if head_grad is None:  # only a tracked (contrastive) forward reads the inputs
            head_grad = torch.zeros_like(head.leaf)
        rows = torch.zeros(
            (len(positions), *head.graph.shape), dtype=head_grad.dtype, device=head_grad.device
        )
        for j, row in enumerate(out.head_rows):
            rows[j, :, row] = head_grad[:, row]
        graphs, grad_rows = [head.graph], [rows]
        for (graph, leaf), grad in zip(forwards.tracked, tracked_grads, strict=True):
            graphs.append(graph)
            grad_rows.append(_step_rows(torch.zeros_like(leaf) if grad is None else grad, len(positions)))
        # Stage 2: push each step's vectors back through the body, batched over steps.
        scales = _half_precision_scales(grad_rows)
        if scales is not None:
            grad_rows = [r * _along_steps(scales, r).to(r.dtype) for r in grad_rows]
        raw = _body_backward(graphs, wanted, grad_rows)
        if scales is not None:
            raw = tuple(g.float() / _along_steps(scales, g) for g in raw)
        grads = iter(raw)
    return (*(next(grads) if e.requires_grad else None for e in embeds), *grads)


def _half_precision_scales(grad_rows: list[torch.Tensor]) -> torch.Tensor | None:
    """For float16 models, a per-step factor bringing each step's largest output gradient to 1 (loss
    scaling): probabilities' gradients are often far below float16's smallest normal number (6e-5) and
    would lose their digits in the backward. The gradients are scaled back in float32. None otherwise."""
    if grad_rows[0].dtype != torch.float16:
        return None
    peaks = torch.stack([r.detach().float().abs().flatten(1).amax(dim=1) for r in grad_rows]).amax(dim=0)
    return torch.where(peaks > 0, 1.0 / peaks, torch.ones_like(peaks))


def _along_steps(scales: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`[n_steps]` scales shaped to broadcast over a `[n_steps, ...]` tensor."""
    return scales.to(like.device).view(-1, *([1] * (like.ndim - 1)))
