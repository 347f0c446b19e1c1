"""Gradient-based methods: saliency, input x gradient, integrated gradients.

Each computes, for a chunk of steps, gradients of the attributed step function with respect to the input
embeddings (`workers.engine.gradients.step_gradients`), then combines them as its captum counterpart does.
"""

from __future__ import annotations

import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from schemas.methods import IntegratedGradientsArgs, SaliencyArgs
from workers.engine.gradients import plan_chunks, rows_per_backward, step_gradients
from workers.engine.model_io import SequenceIO
from workers.methods.base import AttributionMethod, mask_after_step
from workers.types import RawScores, ScoreFn


def _wanted(io: SequenceIO, attribute_target: bool) -> tuple[bool, ...]:
    """Which inputs are attributed: the source always; the target prefix for decoder-only or when asked."""
    return (True, attribute_target) if io.is_encoder_decoder else (True,)


def _prefix(embeds: tuple[torch.Tensor, ...], positions: list[int]) -> tuple[torch.Tensor, ...]:
    """Cut the target side (the last input) after the chunk's last step: nothing later reaches its outputs."""
    return (*embeds[:-1], embeds[-1][:, : max(positions)])


def _to_scores(io: SequenceIO, per_input: list[torch.Tensor | None], positions: list[int]) -> RawScores:
    """`[n_steps, length, hidden]` per input → RawScores `[length, n_steps, hidden]` with the prefix mask.

    The target side was computed on a prefix; it is padded back to the full target length (then masked).
    """
    moved = [None if t is None else t.transpose(0, 1) for t in per_input]
    if io.is_encoder_decoder:
        source, target = moved
    else:
        source, target = None, moved[0]
    if target is not None:
        missing = io.target_ids.shape[1] - target.shape[0]
        if missing:
            target = torch.cat([target, target.new_zeros(missing, *target.shape[1:])])
        target = mask_after_step(target, positions)
    return RawScores(source=source, target=target)


class _PlainGradient(AttributionMethod):
    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        return plan_chunks(positions, rows_per_backward(io, batch=1))

    def combine(self, grad: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        inputs = _prefix(io.input_embeds(), positions)
        wanted = _wanted(io, attribute_target)
        embeds = tuple(e.detach().requires_grad_(want) for e, want in zip(inputs, wanted, strict=True))
        grads = step_gradients(io, embeds, positions, attributed_fn)
        combined = [
            None if g is None else self.combine(g[:, 0], e[0]) for g, e in zip(grads, embeds, strict=True)
        ]
        return _to_scores(io, combined, positions)


class Saliency(_PlainGradient):
    """Gradients of the output with respect to the inputs (Simonyan et al., 2013)."""

    id = "saliency"
    args: SaliencyArgs

    def combine(self, grad: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:  # noqa: ARG002
        return grad.abs() if self.args.abs else grad


class InputXGradient(_PlainGradient):
    """Input embeddings times their gradient (Shrikumar et al., 2016)."""

    id = "input_x_gradient"

    def combine(self, grad: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        return grad * embeds.detach()


class IntegratedGradients(AttributionMethod):
    """Path integral of gradients from a baseline to the input (Sundararajan et al., 2017).

    The interpolated copies form the forward's batch; each step's output is summed over the copies with the
    quadrature weights, so one batched backward yields every step's integrated gradient.
    """

    id = "integrated_gradients"
    args: IntegratedGradientsArgs

    def _copies_per_forward(self, io: SequenceIO) -> int:
        # Bound the batch of interpolated copies by the same per-row budget as the backward.
        return max(1, min(self.args.n_steps, rows_per_backward(io, batch=1)))

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        return plan_chunks(positions, rows_per_backward(io, batch=self._copies_per_forward(io)))

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        step_sizes_fn, alphas_fn = approximation_parameters(self.args.method)
        alphas = torch.tensor(alphas_fn(self.args.n_steps), dtype=torch.float32)
        weights = torch.tensor(step_sizes_fn(self.args.n_steps), dtype=torch.float32)
        inputs = _prefix(io.input_embeds(), positions)
        baselines = _prefix(io.baseline_embeds(), positions)
        wanted = _wanted(io, attribute_target)
        totals: list[torch.Tensor | None] = [None] * len(inputs)
        per_forward = self._copies_per_forward(io)
        for lo in range(0, len(alphas), per_forward):
            a = alphas[lo : lo + per_forward].to(io.loaded.device).view(-1, 1, 1)
            # Only attributed inputs move along the path; the others stay at their real embeddings
            # (repeated over the copies), as captum treats additional forward arguments.
            scaled = tuple(
                (b + a * (x - b)).detach().requires_grad_(True) if want else x.detach().expand(len(a), -1, -1)
                for x, b, want in zip(inputs, baselines, wanted, strict=True)
            )
            grads = step_gradients(io, scaled, positions, attributed_fn, weights[lo : lo + per_forward])
            for i, g in enumerate(grads):
                if g is not None:
                    part = g.sum(dim=1)  # over the copies: the quadrature sum
                    total = totals[i]
                    totals[i] = part if total is None else total + part
        combined: list[torch.Tensor | None] = []
        for total, x, b in zip(totals, inputs, baselines, strict=True):
            if total is not None and self.args.multiply_by_inputs:
                total = total * (x - b)[0].detach()
            combined.append(total)
        return _to_scores(io, combined, positions)
