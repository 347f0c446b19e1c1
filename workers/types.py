"""Types the worker's parts share: the loaded model, raw scores, the step-function signature, progress.

This module depends on nothing else in `workers/`, so the engine, the methods, the model loader and the
job function can all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class StepFunctionArgs:
    """What a step function receives, for a chunk of steps scored at once (the reference's
    `StepFunctionArgs`): room for contrastive forwards and per-function arguments without changing the
    signature."""

    logits: torch.Tensor
    """`[batch, n_steps, vocab]`: the model's logits predicting each step's target."""
    targets: torch.Tensor
    """`[n_steps]`: the target token id of each step."""


StepFunction = Callable[[StepFunctionArgs], torch.Tensor]
"""A score per step, `[batch, n_steps]`; attributable ones are differentiable."""

ProgressFn = Callable[[int, int], None]
"""`on_progress(done, total)`: attributed steps computed so far, over all inputs of a job."""
