"""Layer methods: attributions to the output of a module chosen by name (default: the embedding layer).

As in the reference library, the default layer is the embedding layer, whose output is the engine's input
embeddings: the layer methods are then the gradient methods (gradient x activation = input x gradient,
layer integrated gradients = integrated gradients, layer DeepLIFT = DeepLIFT), with the baseline the
embedding of the baseline tokens. For another layer, a forward hook stands in for the module's output
(`workers.engine.layers`) and every step of a chunk gets its gradient with respect to it in one batched
backward. A layer of the encoder gives source attributions; one of the decoder (or of a decoder-only
model) gives target attributions.
"""

from __future__ import annotations

import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from schemas.errors import InvalidRequestError
from schemas.methods import (
    IntegratedGradientsArgs,
    LayerArgs,
    LayerIntegratedGradientsArgs,
    MultiplyArgs,
    NoArgs,
    SaliencyArgs,
)
from workers.engine.deeplift import Rescale
from workers.engine.gradients import rows_per_backward, step_gradients
from workers.engine.layers import (
    TargetLayer,
    check_per_token,
    first_output,
    output_leaf,
    output_replaced,
    resolve_layer,
)
from workers.engine.model_io import SequenceIO
from workers.methods.base import AttributionMethod, attributed_inputs, raw_scores, step_prefix
from workers.methods.gradient import DeepLift, InputXGradient, IntegratedGradients, Saliency
from workers.types import RawScores, ScoreFn

Inputs = tuple[torch.Tensor, ...]


class _LayerMethod(AttributionMethod):
    args: LayerArgs

    def embedding_method(self) -> AttributionMethod:
        """The gradient method this one is on the embedding layer."""
        raise NotImplementedError

    def attribute_layer(
        self,
        io: SequenceIO,
        layer: TargetLayer,
        positions: list[int],
        attributed_fn: ScoreFn,
        attribute_target: bool,
    ) -> torch.Tensor:
        """Per-step scores `[n_steps, length, *unit]` for the output of a (non-embedding) layer."""
        raise NotImplementedError

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:
        # The same cost per step as the gradient method on the embeddings (same copies per backward).
        return self.embedding_method().plan(io, positions)

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        layer = resolve_layer(io, self.args.target_layer)
        if layer.is_embedding:
            return self.embedding_method().attribute(io, positions, attributed_fn, attribute_target)
        scores = self.attribute_layer(io, layer, positions, attributed_fn, attribute_target)
        per_input: list[torch.Tensor | None] = [scores]
        if io.is_encoder_decoder:
            per_input = [None, scores] if layer.on_target else [scores, None]
        # Layer methods give `[n_steps, length, hidden]` like the gradient family: steps go second.
        return raw_scores(io, [None if t is None else t.transpose(0, 1) for t in per_input], positions)


def _inputs(io: SequenceIO, positions: list[int], attribute_target: bool) -> tuple[Inputs, Inputs]:
    """The chunk's inputs, and the reference inputs whose forward gives the layer's baseline activations:
    the attributed inputs (the source; the target too for decoder-only models or with `attribute_target`)
    at their baseline, the others as they are (captum's additional forward arguments)."""
    inputs = step_prefix(io.input_embeds(), positions)
    baselines = step_prefix(io.baseline_embeds(), positions)
    wanted = attributed_inputs(io, attribute_target)
    reference = tuple(b if want else x for x, b, want in zip(inputs, baselines, wanted, strict=True))
    return tuple(x.detach() for x in inputs), tuple(r.detach() for r in reference)


def _single(layer: TargetLayer, outputs: list[torch.Tensor], inputs: Inputs) -> torch.Tensor:
    """The layer's one captured output in the forward of `inputs`, checked to be per sequence and token."""
    if not outputs:
        raise InvalidRequestError(f"target_layer {layer.name!r} is not run by the model's forward")
    output = outputs[0]
    side = inputs[-1] if layer.on_target else inputs[0]
    check_per_token(layer, output, side.shape[0], side.shape[1])
    return output


def _unit(grad: torch.Tensor) -> torch.Tensor:
    """`[n_steps, length, ...]` with the trailing unit dimensions flattened into one (`hidden`)."""
    return grad.flatten(2)


class LayerGradientXActivation(_LayerMethod):
    """A layer's output times its gradient (captum's `LayerGradientXActivation`)."""

    id = "layer_gradient_x_activation"

    def embedding_method(self) -> AttributionMethod:
        if self.args.multiply_by_inputs:
            return InputXGradient(NoArgs())
        return Saliency(SaliencyArgs(abs=False))

    def attribute_layer(
        self,
        io: SequenceIO,
        layer: TargetLayer,
        positions: list[int],
        attributed_fn: ScoreFn,
        attribute_target: bool,  # noqa: ARG002 - no baseline: nothing depends on which inputs are attributed
    ) -> torch.Tensor:
        assert layer.module is not None
        inputs = tuple(x.detach() for x in step_prefix(io.input_embeds(), positions))
        with output_leaf(layer.module) as leaves:
            grads = step_gradients(io, inputs, positions, attributed_fn, extra_inputs=leaves)
        activation = _single(layer, leaves, inputs)
        grad = grads[-1]
        assert grad is not None
        scores = grad[:, 0] * activation[0] if self.args.multiply_by_inputs else grad[:, 0]
        return _unit(scores)


class LayerIntegratedGradients(_LayerMethod):
    """Integrated gradients on a layer's output, from its activations on the baseline tokens to those on
    the input (captum's `LayerIntegratedGradients`); the interpolated copies share the steps' backward."""

    id = "layer_integrated_gradients"
    args: LayerIntegratedGradientsArgs

    def cost(self, n_steps: int, length: int) -> int:
        return n_steps * length * self.args.n_steps

    def embedding_method(self) -> AttributionMethod:
        return IntegratedGradients(
            IntegratedGradientsArgs(
                n_steps=self.args.n_steps,
                method=self.args.method,
                multiply_by_inputs=self.args.multiply_by_inputs,
            )
        )

    def attribute_layer(
        self,
        io: SequenceIO,
        layer: TargetLayer,
        positions: list[int],
        attributed_fn: ScoreFn,
        attribute_target: bool,
    ) -> torch.Tensor:
        assert layer.module is not None
        inputs, reference = _inputs(io, positions, attribute_target)
        # Input and baseline activations from one forward of both.
        with torch.no_grad(), first_output(layer.module) as seen:
            both_inputs = tuple(torch.cat([x, r]) for x, r in zip(inputs, reference, strict=True))
            io.forward(both_inputs, positions)
        both = _single(layer, seen, both_inputs)
        x_act, b_act = both[:1], both[1:2]
        step_sizes_fn, alphas_fn = approximation_parameters(self.args.method)
        alphas = torch.tensor(alphas_fn(self.args.n_steps), dtype=torch.float32, device=both.device)
        weights = torch.tensor(step_sizes_fn(self.args.n_steps), dtype=torch.float32)
        per_forward = max(1, min(self.args.n_steps, rows_per_backward(io, batch=1)))
        total: torch.Tensor | None = None
        for lo in range(0, len(alphas), per_forward):
            a = alphas[lo : lo + per_forward].to(both.dtype).view(-1, *([1] * (both.ndim - 1)))
            scaled = (b_act + a * (x_act - b_act)).requires_grad_(True)
            copies = tuple(x.expand(len(a), *x.shape[1:]) for x in inputs)
            with output_replaced(layer.module, scaled):
                grads = step_gradients(
                    io,
                    copies,
                    positions,
                    attributed_fn,
                    weights[lo : lo + per_forward],
                    extra_inputs=[scaled],
                )
            grad = grads[-1]
            assert grad is not None
            part = grad.sum(dim=1)  # over the copies: the quadrature sum
            total = part if total is None else total + part
        assert total is not None
        return _unit(total * (x_act - b_act)[0] if self.args.multiply_by_inputs else total)


class LayerDeepLift(_LayerMethod):
    """DeepLIFT with respect to a layer's output (captum's `LayerDeepLift`): the rescaled gradient at the
    layer's output times its activation difference between the input and the baseline tokens."""

    id = "layer_deeplift"

    def embedding_method(self) -> AttributionMethod:
        return DeepLift(MultiplyArgs(multiply_by_inputs=self.args.multiply_by_inputs))

    def attribute_layer(
        self,
        io: SequenceIO,
        layer: TargetLayer,
        positions: list[int],
        attributed_fn: ScoreFn,
        attribute_target: bool,
    ) -> torch.Tensor:
        assert layer.module is not None
        inputs, reference = _inputs(io, positions, attribute_target)
        # Captum does not rescale the layer itself (attributions to its output, not its input).
        rule = Rescale(io.model, skip=layer.module)
        with torch.no_grad(), rule.reference(), first_output(layer.module) as seen:
            io.forward(reference, positions)
        b_act = _single(layer, seen, inputs)
        with rule.rescaled(), output_leaf(layer.module) as leaves:
            grads = step_gradients(io, inputs, positions, attributed_fn, extra_inputs=leaves)
        x_act = _single(layer, leaves, inputs)
        grad = grads[-1]
        assert grad is not None
        scores = grad[:, 0] * (x_act - b_act)[0] if self.args.multiply_by_inputs else grad[:, 0]
        return _unit(scores)
