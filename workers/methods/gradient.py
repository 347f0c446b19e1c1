"""Gradient-based methods: saliency, input x gradient, integrated gradients, DeepLIFT, GradientSHAP, and the
path methods discretized and sequential integrated gradients.

Each computes, for a chunk of steps, gradients of the attributed step function with respect to the input
embeddings (`workers.engine.gradients.step_gradients`), then combines them as its captum counterpart does.
"""

from __future__ import annotations

import secrets

import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from schemas.methods import (
    DiscretizedIntegratedGradientsArgs,
    GradientShapArgs,
    IntegratedGradientsArgs,
    MultiplyArgs,
    SaliencyArgs,
    SequentialIntegratedGradientsArgs,
)
from workers.engine.deeplift import Rescale
from workers.engine.dig_paths import input_paths
from workers.engine.gradients import plan_chunks, rows_per_backward, step_gradients
from workers.engine.model_io import SequenceIO
from workers.engine.sequential_paths import sequential_groups
from workers.methods.base import AttributionMethod, attributed_inputs, raw_scores, step_prefix
from workers.types import RawScores, ScoreFn


def _to_scores(io: SequenceIO, per_input: list[torch.Tensor | None], positions: list[int]) -> RawScores:
    """Per input `[n_steps, length, hidden]` → RawScores `[length, n_steps, hidden]` with the prefix mask."""
    return raw_scores(io, [None if t is None else t.transpose(0, 1) for t in per_input], positions)


class _PlainGradient(AttributionMethod):
    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        return plan_chunks(positions, rows_per_backward(io, batch=1))

    def combine(self, grad: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        inputs = step_prefix(io.input_embeds(), positions)
        wanted = attributed_inputs(io, attribute_target)
        embeds = tuple(e.detach().requires_grad_(want) for e, want in zip(inputs, wanted, strict=True))
        grads = step_gradients(io, embeds, positions, attributed_fn)
        combined = [
            None if g is None else self.combine(g[:, 0].float(), e[0].float())
            for g, e in zip(grads, embeds, strict=True)
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

    def cost(self, n_steps: int, length: int) -> int:
        return n_steps * length * self.args.n_steps

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
        inputs = step_prefix(io.input_embeds(), positions)
        baselines = step_prefix(io.baseline_embeds(), positions)
        wanted = attributed_inputs(io, attribute_target)
        totals: list[torch.Tensor | None] = [None] * len(inputs)
        per_forward = self._copies_per_forward(io)
        for lo in range(0, len(alphas), per_forward):
            a = alphas[lo : lo + per_forward].to(io.loaded.device).view(-1, 1, 1)
            # Only attributed inputs move along the path; the others stay at their real embeddings
            # (repeated over the copies), as captum treats additional forward arguments. Points are
            # computed in float32, then given to the model in its own dtype.
            scaled = tuple(
                (b + a * (x - b)).to(x.dtype).detach().requires_grad_(True)
                if want
                else x.detach().expand(len(a), -1, -1)
                for x, b, want in zip(inputs, baselines, wanted, strict=True)
            )
            grads = step_gradients(io, scaled, positions, attributed_fn, weights[lo : lo + per_forward])
            for i, g in enumerate(grads):
                if g is not None:
                    part = g.float().sum(dim=1)  # over the copies: the quadrature sum
                    total = totals[i]
                    totals[i] = part if total is None else total + part
        combined: list[torch.Tensor | None] = []
        for total, x, b in zip(totals, inputs, baselines, strict=True):
            if total is not None and self.args.multiply_by_inputs:
                total = total * (x.float() - b.float())[0].detach()
            combined.append(total)
        return _to_scores(io, combined, positions)


class DeepLift(AttributionMethod):
    """DeepLIFT with the rescale rule (Shrikumar et al., 2017), as captum's `DeepLift`.

    At the model's supported nonlinear modules the backward uses the ratio of output to input differences
    between the input and the baseline (`workers.engine.deeplift`); elsewhere gradients are plain. The
    baseline runs once, without gradients, as the reference; the input's steps share one batched backward.
    """

    id = "deeplift"
    args: MultiplyArgs

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        return plan_chunks(positions, rows_per_backward(io, batch=1))

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        inputs = step_prefix(io.input_embeds(), positions)
        baselines = step_prefix(io.baseline_embeds(), positions)
        wanted = attributed_inputs(io, attribute_target)
        rule = Rescale(io.model)
        if rule:
            # Captum's baseline half of the batch: attributed inputs at their baseline, others as they are.
            reference = tuple(b if want else x for x, b, want in zip(inputs, baselines, wanted, strict=True))
            with torch.no_grad(), rule.reference():
                io.forward(reference, positions)
        embeds = tuple(x.detach().requires_grad_(want) for x, want in zip(inputs, wanted, strict=True))
        with rule.rescaled():
            grads = step_gradients(io, embeds, positions, attributed_fn)
        combined = [
            None
            if g is None
            else g[:, 0].float() * (x - b)[0].detach().float()
            if self.args.multiply_by_inputs
            else g[:, 0].float()
            for g, x, b in zip(grads, inputs, baselines, strict=True)
        ]
        return _to_scores(io, combined, positions)


class GradientShap(AttributionMethod):
    """Expected gradients (Lundberg and Lee, 2017), as captum's GradientShap: for each of `n_samples` copies,
    Gaussian noise (`stdevs`) is added to the input, a point is drawn uniformly on the segment from the
    baseline to that noisy input, and its gradient times (noisy input - baseline) is averaged over the copies.

    The copies form the forward's batch, shared by every step of the chunk; the draws come from a generator
    seeded by `seed` and cover the whole sequence, so they do not depend on how the steps are chunked.
    """

    id = "gradient_shap"
    args: GradientShapArgs

    def cost(self, n_steps: int, length: int) -> int:
        return n_steps * length * self.args.n_samples

    def _copies_per_forward(self, io: SequenceIO) -> int:
        return max(1, min(self.args.n_samples, rows_per_backward(io, batch=1)))

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        return plan_chunks(positions, rows_per_backward(io, batch=self._copies_per_forward(io)))

    def _draws(self, full: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Path coefficients `[n_samples]` and, per input, noise `[n_samples, length, hidden]` (CPU draws, so
        a seed gives the same numbers on any device)."""
        generator = torch.Generator()
        generator.manual_seed(self.args.seed if self.args.seed is not None else secrets.randbits(63))
        n = self.args.n_samples
        alphas = torch.rand(n, generator=generator, dtype=torch.float64)
        noise = [torch.randn((n, *x.shape[1:]), generator=generator, dtype=torch.float64) for x in full]
        return alphas, noise

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        full = io.input_embeds()
        alphas_all, noise_all = self._draws(full)
        inputs = step_prefix(full, positions)
        baselines = step_prefix(io.baseline_embeds(), positions)
        wanted = attributed_inputs(io, attribute_target)
        device, n = io.loaded.device, self.args.n_samples
        totals: list[torch.Tensor | None] = [None] * len(inputs)
        per_forward = self._copies_per_forward(io)
        for lo in range(0, n, per_forward):
            hi = min(n, lo + per_forward)
            a = alphas_all[lo:hi].to(device=device, dtype=torch.float32).view(-1, 1, 1)
            noisy = [
                x.float()
                + (self.args.stdevs * noise[lo:hi, : x.shape[1]]).to(device=device, dtype=torch.float32)
                for x, noise in zip(inputs, noise_all, strict=True)
            ]
            # Only attributed inputs are noised and moved; the others stay at their embeddings (captum's
            # additional forward arguments). Points in float32, given to the model in its own dtype.
            points = tuple(
                (b + a * (xn - b)).to(x.dtype).detach().requires_grad_(True)
                if want
                else x.detach().expand(hi - lo, -1, -1)
                for x, xn, b, want in zip(inputs, noisy, baselines, wanted, strict=True)
            )
            grads = step_gradients(io, points, positions, attributed_fn)
            for i, g in enumerate(grads):
                if g is None:
                    continue
                g = g.float()
                if self.args.multiply_by_inputs:
                    g = g * (noisy[i] - baselines[i].float()).detach()[None]
                part = g.sum(dim=1)
                total = totals[i]
                totals[i] = part if total is None else total + part
        combined = [None if t is None else t / n for t in totals]
        return _to_scores(io, combined, positions)


class DiscretizedIntegratedGradients(AttributionMethod):
    """Integrated gradients along a monotonic path through real word embeddings (Sanyal and Ren, 2021).

    Every token's path (`workers.engine.dig_paths`, the reference's builder) has `n_steps` points, from the
    baseline to the word; the gradient at each point times the step to the next one is summed (the last
    point's step is empty, so it is not computed). The path points of all tokens form the forward's batch,
    shared by every step of the chunk, as with integrated gradients.
    """

    id = "discretized_integrated_gradients"
    args: DiscretizedIntegratedGradientsArgs

    def _points(self) -> int:
        """Path points whose gradient counts: all but the last (the path has at least two points)."""
        return max(2, self.args.n_steps) - 1

    def cost(self, n_steps: int, length: int) -> int:
        return n_steps * length * self._points()

    def _copies_per_forward(self, io: SequenceIO) -> int:
        return max(1, min(self._points(), rows_per_backward(io, batch=1)))

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        return plan_chunks(positions, rows_per_backward(io, batch=self._copies_per_forward(io)))

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        inputs = step_prefix(io.input_embeds(), positions)
        wanted = attributed_inputs(io, attribute_target)
        paths = input_paths(
            io, positions, wanted, self.args.n_steps, self.args.strategy, self.args.n_neighbors
        )
        totals: list[torch.Tensor | None] = [None] * len(inputs)
        n_points, per_forward = self._points(), self._copies_per_forward(io)
        for lo in range(0, n_points, per_forward):
            hi = min(n_points, lo + per_forward)
            # Attributed inputs sit on their path; the others keep their embeddings (captum's additional
            # forward arguments).
            points = tuple(
                x.detach().expand(hi - lo, -1, -1)
                if path is None
                else path[lo:hi].to(x.dtype).detach().requires_grad_(True)
                for x, path in zip(inputs, paths, strict=True)
            )
            grads = step_gradients(io, points, positions, attributed_fn)
            for i, (g, path) in enumerate(zip(grads, paths, strict=True)):
                if g is None or path is None:
                    continue
                part = (g.float() * (path[lo + 1 : hi + 1] - path[lo:hi])[None]).sum(dim=1)
                total = totals[i]
                totals[i] = part if total is None else total + part
        combined: list[torch.Tensor | None] = []
        for total, path in zip(totals, paths, strict=True):
            if total is not None and path is not None and self.args.multiply_by_inputs:
                total = total * (path[-1] - path[0])
            combined.append(total)
        return _to_scores(io, combined, positions)


class SequentialIntegratedGradients(AttributionMethod):
    """Integrated gradients for one token at a time, the others kept at their embeddings (Enguehard, 2023).

    As the reference (after `tint`): for each position of each attributed input, the straight path from the
    baseline (the method's usual baselines) to the input moves that position only; its score is the
    quadrature sum of the gradient at that position (times input - baseline with `multiply_by_inputs`). The
    (token, point) copies of an input are packed into forward batches (`workers.engine.sequential_paths`),
    each batch shared by every step of the chunk. The reference requires all attributed inputs to have the
    same length, so it fails on encoder-decoder models with `attribute_target`; here each input's tokens move
    in turn, the other input kept at its embeddings.
    """

    id = "sequential_integrated_gradients"
    args: SequentialIntegratedGradientsArgs

    def cost(self, n_steps: int, length: int) -> int:
        # Every token of the sequence has its own path of `n_steps` points.
        return n_steps * length * length * self.args.n_steps

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        # Steps per chunk as integrated gradients with one token's points per forward.
        per_token = max(1, min(self.args.n_steps, rows_per_backward(io, batch=1)))
        return plan_chunks(positions, rows_per_backward(io, batch=per_token))

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        step_sizes_fn, alphas_fn = approximation_parameters(self.args.method)
        alphas = torch.tensor(alphas_fn(self.args.n_steps), dtype=torch.float32)
        weights = torch.tensor(step_sizes_fn(self.args.n_steps), dtype=torch.float32, device=io.loaded.device)
        inputs = step_prefix(io.input_embeds(), positions)
        baselines = step_prefix(io.baseline_embeds(), positions)
        wanted = attributed_inputs(io, attribute_target)
        # As many copies per forward as the chunk's steps leave room for in the batched backward.
        group_size = max(1, rows_per_backward(io, batch=len(positions)))
        totals: list[torch.Tensor | None] = [None] * len(inputs)
        for i, (x, b, want) in enumerate(zip(inputs, baselines, wanted, strict=True)):
            if not want:
                continue
            # Summed in float32 whatever the model's dtype.
            total = torch.zeros((len(positions), *x.shape[1:]), device=x.device)
            for group in sequential_groups(x, b, alphas, group_size):
                copies = len(group.tokens)
                embeds = tuple(
                    group.embeds.requires_grad_(True) if j == i else other.detach().expand(copies, -1, -1)
                    for j, other in enumerate(inputs)
                )
                grad = step_gradients(io, embeds, positions, attributed_fn, weights[group.points])[i]
                assert grad is not None
                # Each copy contributes only its moved token's gradient.
                moved = grad[:, torch.arange(copies, device=grad.device), group.tokens]
                total.index_add_(1, group.tokens, moved.float())
            if self.args.multiply_by_inputs:
                total = total * (x - b)[0].detach().float()
            totals[i] = total
        return _to_scores(io, totals, positions)
