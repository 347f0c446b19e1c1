"""The method interface: what the engine calls for each chunk of attributed steps.

A method's client-facing facts (family, description, baselines, parameters) live in its catalogue entry,
`schemas.methods.METHOD_SPECS[method.id]`; the class holds only its behaviour.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from schemas.aggregators import Aggregator
from schemas.methods import MethodArgs
from workers.engine.model_io import SequenceIO
from workers.types import RawScores, ScoreFn


class AttributionMethod:
    """One attribution method, built with its validated `method_args`."""

    id: ClassVar[str]
    default_reducers: ClassVar[tuple[Aggregator, ...]] = (Aggregator.VNORM,)
    """Reductions over the trailing unit dimensions, last one first (the reference library's defaults)."""

    def __init__(self, args: MethodArgs) -> None:
        self.args = args

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
