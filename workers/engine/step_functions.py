"""Step functions: scores of the model's prediction at each attributed step, from its logits.

Each takes a `StepFunctionArgs` for a chunk of steps (logits `[batch, n_steps, vocab]`, targets `[n_steps]`)
and returns `[batch, n_steps]`, so one forward over the whole sequence scores every step at once.
Attributable ones are differentiable. Their ids and descriptions live in `schemas/step_functions.py`.
"""

from __future__ import annotations

import torch

from schemas.step_functions import STEP_FUNCTION_SPECS
from workers.types import StepFunction, StepFunctionArgs


def _gather(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    index = targets.expand(*scores.shape[:-1]).unsqueeze(-1)
    return scores.gather(-1, index).squeeze(-1)


def probability(args: StepFunctionArgs) -> torch.Tensor:
    """Probability of the target token."""
    return _gather(args.logits.softmax(dim=-1), args.targets)


def entropy(args: StepFunctionArgs) -> torch.Tensor:
    """Entropy (nats) of the next-token distribution."""
    logprobs = args.logits.log_softmax(dim=-1)
    return -(logprobs.exp() * logprobs).sum(dim=-1)


STEP_FUNCTION_REGISTRY: dict[str, StepFunction] = {}
"""Implemented step functions by id; lists the same ids as `schemas.step_functions.STEP_FUNCTION_SPECS`."""


def register_step_function(name: str, fn: StepFunction, overwrite: bool = False) -> None:
    """Add a step function; refuses to replace an existing id silently, and ids the catalogue lacks."""
    if name in STEP_FUNCTION_REGISTRY and not overwrite:
        raise ValueError(f"step function {name!r} is already registered")
    if name not in STEP_FUNCTION_SPECS:
        raise ValueError(f"step function {name!r} has no entry in schemas.step_functions")
    STEP_FUNCTION_REGISTRY[name] = fn


register_step_function("probability", probability)
register_step_function("entropy", entropy)
