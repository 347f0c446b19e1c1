"""The aggregation functions and column scalings on numpy arrays, as the reference library computes them.

The API process re-aggregates stored scores with these (it has no torch); the workers' early reductions
(`workers.engine.aggregation`) are the same functions in torch, and a test checks both agree on every
aggregator. NaN marks undefined cells (target positions at or after their step) and propagates like torch's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from schemas.aggregators import Aggregator

Reduce = Callable[[np.ndarray, int], np.ndarray]


def _absmax(a: np.ndarray, axis: int) -> np.ndarray:
    """The value of largest magnitude, sign kept; NaN counts as 0 when choosing (torch's `nan_to_num`)."""
    index = np.expand_dims(np.abs(np.nan_to_num(a)).argmax(axis=axis), axis)
    return np.take_along_axis(a, index, axis).squeeze(axis)


def _vnorm(a: np.ndarray, axis: int) -> np.ndarray:
    return np.sqrt(np.sum(np.square(a), axis=axis))


FUNCTIONS: dict[Aggregator, Reduce] = {
    Aggregator.VNORM: _vnorm,
    Aggregator.SUM: lambda a, axis: np.sum(a, axis=axis),
    Aggregator.MEAN: lambda a, axis: np.mean(a, axis=axis),
    Aggregator.ABSMAX: _absmax,
    Aggregator.MAX: lambda a, axis: np.max(a, axis=axis),
    Aggregator.MIN: lambda a, axis: np.min(a, axis=axis),
    Aggregator.PROD: lambda a, axis: np.prod(a, axis=axis),
}
"""Reductions over one axis, by aggregator (`schemas.aggregators`); a test checks all are here."""


def _joined(parts: list[np.ndarray], scale: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """Apply `scale` to the parts stacked along axis 0 (source rows, then target rows) with NaN read as 0,
    then put the NaN back and split the parts again."""
    joined = np.concatenate(parts, axis=0)
    undefined = np.isnan(joined)
    scaled = scale(np.where(undefined, 0.0, joined))
    scaled[undefined] = np.nan
    return np.split(scaled, np.cumsum([p.shape[0] for p in parts])[:-1], axis=0)


def normalize(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Each step's column scaled to L1 norm 1 over all the parts' rows (an all-zero column stays zero)."""
    return _joined(parts, lambda a: a / np.maximum(np.abs(a).sum(axis=0, keepdims=True), 1e-12))


def rescale(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Everything divided by the largest absolute score of all the parts (all-zero scores stay zero)."""
    return _joined(parts, lambda a: a / max(float(np.abs(a).max(initial=0.0)), 1e-12))
