"""Types the worker's parts share: the loaded model, raw scores, the step-function signature, progress.

This module depends on nothing else in `workers/`, so the engine, the methods, the model loader and the
job function can all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from schemas.models import ModelEntry


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for attribution: frozen weights, eager attention, its tokenizer."""

    entry: ModelEntry
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.config.is_encoder_decoder)

    @property
    def architecture(self) -> str:
        """The model's class name, e.g. `LlamaForCausalLM`."""
        return type(self.model).__name__


@dataclass
class RawScores:
    """Unreduced scores of a chunk of steps: `[length, n_steps, *unit_dims]`, NaN where undefined."""

    source: torch.Tensor | None
    target: torch.Tensor | None


ForwardAgain = Callable[[], torch.Tensor]
"""Runs the model again on a chunk's inputs with dropout active; returns logits `[batch, n_steps, vocab]`."""


@dataclass(frozen=True)
class ContrastView:
    """The contrastive side of a chunk of steps: which logits to read and which token to read in them."""

    logits: torch.Tensor
    """`[batch or 1, n_steps, vocab]`: the contrastive forward's logits, or the original ones when a
    contrastive attributed function reads the contrastive target token from the original forward (the
    reference's default, so that gradients flow through both sides)."""
    targets: torch.Tensor
    """`[n_steps]`: each step's contrastive target token (the original one with contrast sources only)."""
    forward: Callable[[], torch.Tensor]
    """`[1 or batch, n_steps, vocab]`: the contrastive forward's logits, always (to compare whole
    distributions); computed on first call."""


@dataclass(frozen=True)
class StepFunctionArgs:
    """What a step function receives, for a chunk of steps scored at once (the reference's
    `StepFunctionArgs`): the main forward, the contrastive side, and the function's own arguments."""

    logits: torch.Tensor
    """`[batch, n_steps, vocab]`: the model's logits predicting each step's target."""
    targets: torch.Tensor
    """`[n_steps]`: the target token id of each step."""
    params: Any
    """The function's validated arguments (`schemas.step_functions.STEP_FUNCTION_PARAMS[id]`)."""
    contrast: ContrastView | None = None
    """The contrastive side, for contrastive functions."""
    forward_again: ForwardAgain | None = None
    """Runs the model again on the same inputs with dropout active; returns logits like `logits`."""


StepFunction = Callable[[StepFunctionArgs], torch.Tensor]
"""A score per step, `[batch, n_steps]`; attributable ones are differentiable."""


@dataclass
class ChunkForwards:
    """What an attributed function may run beyond its chunk's main forward, and how its gradient gets back.

    Args:
        embeds: the chunk's inputs as the main forward got them (`(source, target)` or `(target,)`).
        again: a noisy forward on them with dropout active (a constant for the gradient).
    """

    embeds: tuple[torch.Tensor, ...]
    again: ForwardAgain
    tracked: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def track(self, output: torch.Tensor) -> torch.Tensor:
        """A leaf standing for `output` (`[batch, n_steps, ...]`, step j at index j of dim 1): the engine
        sends each step's gradient back through `output`'s own graph, in the main batched backward."""
        if not output.requires_grad:
            return output
        leaf = output.detach().requires_grad_(True)
        self.tracked.append((output, leaf))
        return leaf


ScoreFn = Callable[[torch.Tensor, ChunkForwards], torch.Tensor]
"""The attributed function bound to a chunk of steps: (logits `[batch, n_steps, vocab]`, other forwards) →
scores `[batch, n_steps]`. The engine binds targets, arguments and the contrastive side."""

ProgressFn = Callable[[int, int], None]
"""`on_progress(done, total)`: attributed steps computed so far, over all inputs of a job."""
