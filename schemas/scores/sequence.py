"""One sequence's scores as numpy arrays, and their JSON form (`schemas.results.SequenceAttribution`).

Workers build the result's sequences through `to_result_sequence`, and the API builds re-aggregated ones the
same way, so both give the same JSON for the same numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.results import Cell, SequenceAttribution, Token


@dataclass(frozen=True)
class SequenceScores:
    """Scores of one sequence: rows are positions, columns attributed steps, then any unit dimensions left
    (hidden size, heads, layers) until a `scores` step reduces them. NaN marks undefined cells."""

    source: list[Token]
    target: list[Token]
    attr_pos_start: int
    attr_pos_end: int
    source_scores: np.ndarray | None
    target_scores: np.ndarray | None
    step_scores: dict[str, np.ndarray]
    contrast_source: list[Token] | None = None
    contrast_target: list[Token] | None = None
    contrast_positions: list[int] | None = None

    @property
    def unit_ndim(self) -> int:
        """How many unit dimensions each (position, step) cell still has."""
        scores = self.source_scores if self.source_scores is not None else self.target_scores
        return 0 if scores is None else scores.ndim - 2

    @property
    def n_steps(self) -> int:
        return self.attr_pos_end - self.attr_pos_start

    def replace(self, **changes: Any) -> SequenceScores:
        return dataclasses.replace(self, **changes)


def _cells(scores: np.ndarray) -> list[list[Cell]]:
    """`[rows, columns(, unit...)]` as JSON-ready rows: NaN → null, and a unit cell that is all NaN → one
    null."""
    if scores.ndim == 2:
        return [[None if v != v else v for v in row] for row in scores.tolist()]
    undefined = np.isnan(scores).reshape(*scores.shape[:2], -1).all(axis=-1).tolist()
    return [
        [None if undefined[i][j] else _nan_to_none(cell) for j, cell in enumerate(row)]
        for i, row in enumerate(scores.tolist())
    ]


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if value != value else value


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in values.tolist()]


def to_result_sequence(seq: SequenceScores) -> SequenceAttribution:
    """The JSON form of a sequence's scores."""
    return {
        "source": seq.source,
        "target": seq.target,
        "attr_pos_start": seq.attr_pos_start,
        "attr_pos_end": seq.attr_pos_end,
        "source_attributions": None if seq.source_scores is None else _cells(seq.source_scores),
        "target_attributions": None if seq.target_scores is None else _cells(seq.target_scores),
        "step_scores": {name: _floats(values) for name, values in seq.step_scores.items()},
        "sequence_scores": {},
        "contrast_source": seq.contrast_source,
        "contrast_target": seq.contrast_target,
        "contrast_positions": seq.contrast_positions,
    }
