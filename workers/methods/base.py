"""The method interface: what the engine calls for each chunk of attributed steps.

A method's client-facing facts (family, description, baselines, parameters) live in its catalogue entry,
`schemas.methods.METHOD_SPECS[method.id]`; the class holds only its behaviour.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from schemas.aggregators import Aggregator
from schemas.methods import METHOD_SPECS, MethodArgs
from workers.engine.model_io import SequenceIO
from workers.types import RawScores, ScoreFn


class AttributionMethod:
    """One attribution method, built with its validated `method_args`."""

    id: ClassVar[str]

    def __init__(self, args: MethodArgs) -> None:
        self.args = args

    def reducers(self, chosen: list[Aggregator] | None) -> list[Aggregator | None]:
        """The reductions to apply: the method's defaults, one chosen aggregator for every unit dimension, or
        one per dimension (the request checked the count against the catalogue's `unit_dims`)."""
        defaults = METHOD_SPECS[self.id].default_aggregators
        if not chosen:
            return list(defaults)
        if len(chosen) == 1:
            return [chosen[0]] * len(defaults)
        return list(chosen)

    def cost(self, n_steps: int, length: int) -> int:
        """About how many token-steps (one token through one forward and backward) attributing `n_steps`
        steps of a `length`-token sequence costs; `workers.engine.run.job_cost` bounds a job's size with it.
        By default one backward over the sequence per step."""
        return n_steps * length

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:  # noqa: ARG002 - for subclasses
        """How to split the attributed steps into chunks computed together; one chunk by default."""
        return [positions]

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        raise NotImplementedError


def mask_after_step(scores: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """Set target rows at or after each column's step position to NaN (they are not in its prefix)."""
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None]
    cols = torch.tensor(positions, device=scores.device)[None, :]
    mask = rows >= cols
    return scores.masked_fill(mask.reshape(*mask.shape, *([1] * (scores.ndim - 2))), float("nan"))


def attributed_inputs(io: SequenceIO, attribute_target: bool) -> tuple[bool, ...]:
    """Which inputs are attributed: the source always; the target prefix for decoder-only models, or for
    encoder-decoder models when asked (`attribute_target`)."""
    return (True, attribute_target) if io.is_encoder_decoder else (True,)


def step_prefix(embeds: tuple[torch.Tensor, ...], positions: list[int]) -> tuple[torch.Tensor, ...]:
    """Cut the target side (the last input) after the chunk's last step: nothing later reaches its outputs."""
    return (*embeds[:-1], embeds[-1][:, : max(positions)])


def raw_scores(io: SequenceIO, per_input: list[torch.Tensor | None], positions: list[int]) -> RawScores:
    """Per input `[rows, n_steps, *units]` → RawScores: the target (the last input), computed on the chunk's
    prefix, is padded back to the full target length and masked at and after each step."""
    target = per_input[-1]
    if target is not None:
        missing = io.target_ids.shape[1] - target.shape[0]
        if missing:
            target = torch.cat([target, target.new_zeros(missing, *target.shape[1:])])
        target = mask_after_step(target, positions)
    if io.is_encoder_decoder:
        return RawScores(source=per_input[0], target=target)
    return RawScores(source=None, target=target)
