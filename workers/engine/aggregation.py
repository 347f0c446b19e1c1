"""Reducing raw scores to one number per (position, step), the reference library's way.

Each reducer collapses the last unit dimension (hidden size for gradients; heads then layers for attention);
after each reduction, with `normalize`, every step's column is scaled to L1 norm 1 over source and target
together. NaN cells (positions after the step) are left out of the norm and stay NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from schemas.aggregators import Aggregator
from workers.types import RawScores

Reducer = Callable[[torch.Tensor], torch.Tensor]


def _absmax(scores: torch.Tensor) -> torch.Tensor:
    index = torch.nan_to_num(scores).abs().argmax(dim=-1, keepdim=True)
    return scores.gather(-1, index).squeeze(-1)


REDUCERS: dict[Aggregator, Reducer] = {
    Aggregator.VNORM: lambda s: torch.linalg.vector_norm(s, ord=2, dim=-1),
    Aggregator.SUM: lambda s: s.sum(dim=-1),
    Aggregator.MEAN: lambda s: s.mean(dim=-1),
    Aggregator.ABSMAX: _absmax,
    Aggregator.MAX: lambda s: s.max(dim=-1).values,
    Aggregator.MIN: lambda s: s.min(dim=-1).values,
    Aggregator.PROD: lambda s: s.prod(dim=-1),
}
"""Reductions over the last dimension, by aggregator (`schemas.aggregators`); a test checks all are here."""


def normalize_columns(scores: RawScores) -> RawScores:
    """Scale each step's column to L1 norm 1 over source and target together, ignoring NaN."""
    sums = [
        torch.nan_to_num(t).abs().sum(dim=0, keepdim=True)
        for t in (scores.source, scores.target)
        if t is not None
    ]
    total = torch.stack(sums).sum(dim=0).clamp_min(1e-12)  # an all-zero column stays zero, not NaN
    return RawScores(
        source=None if scores.source is None else scores.source / total,
        target=None if scores.target is None else scores.target / total,
    )


def _drop_unit(scores: torch.Tensor) -> torch.Tensor:
    if scores.shape[-1] != 1:
        raise ValueError(f"a dimension of {scores.shape[-1]} units cannot be dropped without aggregation")
    return scores.squeeze(-1)


def aggregate(scores: RawScores, reducers: list[Aggregator | None], normalize: bool) -> RawScores:
    """Apply each reducer to the trailing dimension in turn, normalizing after each one if asked; None drops a
    dimension of one unit (a single selected head or layer)."""
    for name in reducers:
        reduce = _drop_unit if name is None else REDUCERS[name]
        scores = RawScores(
            source=None if scores.source is None else reduce(scores.source),
            target=None if scores.target is None else reduce(scores.target),
        )
        if normalize:
            scores = normalize_columns(scores)
    return scores
