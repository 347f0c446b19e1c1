"""Step functions: scores of the model's prediction at each attributed step, from its logits.

Each takes logits `[..., n_steps, vocab]` and the step targets `[n_steps]` and returns `[..., n_steps]`,
so one forward over the whole sequence scores every step at once. Attributable ones are differentiable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

StepFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _gather(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    index = targets.expand(*scores.shape[:-1]).unsqueeze(-1)
    return scores.gather(-1, index).squeeze(-1)


def probability(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Probability of the target token."""
    return _gather(logits.softmax(dim=-1), targets)


def entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ARG001 - shared signature
    """Entropy (nats) of the next-token distribution."""
    logprobs = logits.log_softmax(dim=-1)
    return -(logprobs.exp() * logprobs).sum(dim=-1)


STEP_FUNCTIONS: dict[str, StepFunction] = {}
"""Implemented step functions by id; must list the same ids as `schemas.step_functions.STEP_FUNCTIONS`."""


def register_step_function(name: str, fn: StepFunction, overwrite: bool = False) -> None:
    """Add a step function; refuses to replace an existing id silently."""
    if name in STEP_FUNCTIONS and not overwrite:
        raise ValueError(f"step function {name!r} is already registered")
    STEP_FUNCTIONS[name] = fn


register_step_function("probability", probability)
register_step_function("entropy", entropy)
