"""One sequence of a result laid out as a heatmap: what both the HTML page and the images draw.

Rows are the source tokens (encoder-decoder models) then the target tokens, columns the attributed steps
(target positions `attr_pos_start + j`), and step scores are extra rows under the columns. A granular
result's cells (lists of unreduced scores) are shown as their L2 norm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.exports.common import tokens_text
from service.views.colors import ColorScale


@dataclass(frozen=True)
class Row:
    """One heatmap row: a token of the source or of the target."""

    side: str
    position: int
    token: str
    text: str


@dataclass(frozen=True)
class Column:
    """One attributed step: the target token it explains and, for contrastive results whose aligned contrast
    token differs, that token (shown as 'contrast → target', as the reference library labels it)."""

    position: int
    token: str
    text: str
    contrast: str | None = None

    @property
    def label(self) -> str:
        return self.token if self.contrast is None else f"{self.contrast} → {self.token}"


@dataclass(frozen=True)
class SequenceHeatmap:
    """The rows, columns and scores of one sequence.

    Attributes:
        index: the sequence's index in the result.
        rows: source rows then target rows.
        columns: one per attributed step.
        scores: `[len(rows)][len(columns)]`; None where the result has null.
        step_scores: step score id → `[len(columns)]`.
        unit_shape: the shape of each unreduced cell of a granular result (() otherwise).
    """

    index: int
    rows: list[Row]
    columns: list[Column]
    scores: list[list[float | None]]
    step_scores: dict[str, list[float | None]]
    unit_shape: tuple[int, ...]
    source_text: str
    target_parts: tuple[str, str, str]
    """The target's text before, inside and after the attributed positions."""
    contrast_text: str | None
    contrast_source_text: str | None

    @property
    def granular(self) -> bool:
        return bool(self.unit_shape)

    @property
    def n_source_rows(self) -> int:
        return sum(1 for row in self.rows if row.side == "source")

    def scale(self) -> ColorScale:
        return ColorScale.fit(v for row in self.scores for v in row)


def _shape(cell: Any) -> tuple[int, ...]:
    shape: list[int] = []
    while isinstance(cell, list):
        shape.append(len(cell))
        cell = cell[0] if cell else None
    return tuple(shape)


def _squares(cell: Any) -> float:
    if isinstance(cell, list):
        return sum(_squares(v) for v in cell)
    return 0.0 if cell is None else float(cell) * float(cell)


def l2_norm(cell: Any) -> float | None:
    """A cell as one score: itself, or the L2 norm of its unreduced scores (None for a null cell)."""
    if cell is None or not isinstance(cell, list):
        return cell
    return math.sqrt(_squares(cell))


def _columns(seq: Mapping[str, Any], count: int) -> list[Column]:
    start, target = seq["attr_pos_start"], seq["target"]
    contrast = seq.get("contrast_target")
    positions = seq.get("contrast_positions")
    columns = []
    for j in range(count):
        token = target[start + j] if start + j < len(target) else {"id": -1, "token": "", "text": ""}
        other = None
        if contrast and positions and j < len(positions) and 0 <= positions[j] < len(contrast):
            aligned = contrast[positions[j]]
            # Tokens merged by an aggregation all have id -1: their strings tell them apart.
            if aligned["id"] != token["id"] or aligned["token"] != token["token"]:
                other = str(aligned["token"])
        columns.append(Column(start + j, str(token["token"]), str(token.get("text", token["token"])), other))
    return columns


def _matrix_width(seq: Mapping[str, Any]) -> int:
    for field in ("source_attributions", "target_attributions"):
        matrix = seq.get(field)
        if matrix:
            return len(matrix[0])
    widths = [len(v) for v in (seq.get("step_scores") or {}).values()]
    return max(widths, default=seq["attr_pos_end"] - seq["attr_pos_start"])


def sequence_heatmap(seq: Mapping[str, Any], index: int) -> SequenceHeatmap:
    """The heatmap of one result sequence (`schemas.results.SequenceAttribution`)."""
    rows: list[Row] = []
    scores: list[list[float | None]] = []
    unit_shape: tuple[int, ...] = ()
    for side in ("source", "target"):
        matrix = seq.get(f"{side}_attributions")
        if not matrix:
            continue
        # Rows may stop before the side does (a target attributed up to attr_pos_end only).
        for position, (token, cells) in enumerate(zip(seq[side], matrix, strict=False)):
            rows.append(Row(side, position, str(token["token"]), str(token.get("text", token["token"]))))
            if not unit_shape:
                unit_shape = next((_shape(c) for c in cells if isinstance(c, list)), ())
            scores.append([l2_norm(c) for c in cells])
    width = _matrix_width(seq)
    start, end = seq["attr_pos_start"], seq["attr_pos_end"]
    contrast = seq.get("contrast_target")
    return SequenceHeatmap(
        index=index,
        rows=rows,
        columns=_columns(seq, width),
        scores=scores,
        step_scores={name: list(values) for name, values in (seq.get("step_scores") or {}).items()},
        unit_shape=unit_shape,
        source_text=tokens_text(seq["source"]),
        target_parts=(
            tokens_text(seq["target"][:start]),
            tokens_text(seq["target"][start:end]),
            tokens_text(seq["target"][end:]),
        ),
        contrast_text=tokens_text(contrast) if contrast else None,
        contrast_source_text=tokens_text(seq["contrast_source"]) if seq.get("contrast_source") else None,
    )


def result_heatmaps(result: Mapping[str, Any]) -> list[SequenceHeatmap]:
    """The heatmap of every sequence of a result (`schemas.results.AttributionResult`)."""
    return [sequence_heatmap(seq, k) for k, seq in enumerate(result.get("sequences", ()))]
