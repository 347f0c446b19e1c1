"""What the export formats share: the score fields of a sequence, granularity, rounding, score widths, and
turning many small rendered pieces into few large chunks."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

SCORE_FIELDS = ("source_attributions", "target_attributions", "step_scores", "sequence_scores")
"""The members of a sequence that hold scores (what `precision` rounds)."""

MATRIX_FIELDS = ("source_attributions", "target_attributions")

_WIDTH_SAMPLE = 2000
"""Scores looked at to estimate the mean width of a rendered score."""


def rounded(value: Any, digits: int) -> Any:
    """`value` with every float in it rounded to `digits` decimals (lists and dicts walked)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return value


def first_cell(result: Mapping[str, Any]) -> Any:
    """The first non-null cell of any attribution matrix (None when every cell is null)."""
    for seq in result.get("sequences", ()):
        for field in MATRIX_FIELDS:
            for row in seq.get(field) or ():
                for cell in row:
                    if cell is not None:
                        return cell
    return None


def unit_shape(cell: Any) -> tuple[int, ...]:
    """The shape of a granular cell's nested lists (() for a plain score)."""
    shape: list[int] = []
    while isinstance(cell, list):
        shape.append(len(cell))
        cell = cell[0] if cell else None
    return tuple(shape)


def is_granular(result: Mapping[str, Any]) -> bool:
    """Whether the matrices hold lists of unreduced scores rather than one score per cell."""
    return isinstance(first_cell(result), list)


def _scalars(value: Any) -> Iterator[float]:
    if isinstance(value, float | int) and not isinstance(value, bool):
        yield float(value)
    elif isinstance(value, list):
        for v in value:
            yield from _scalars(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)


def score_width(result: Mapping[str, Any], precision: int | None) -> float:
    """Mean characters of a non-null score as Python (and orjson, and the csv module) writes it, from a
    sample of the result's scores."""
    sample = list(
        itertools.islice(
            (v for seq in result.get("sequences", ()) for f in SCORE_FIELDS for v in _scalars(seq.get(f))),
            _WIDTH_SAMPLE,
        )
    )
    if not sample:
        return 0.0
    if precision is not None:
        sample = [round(v, precision) for v in sample]
    return sum(len(repr(v)) for v in sample) / len(sample)


def count_cells(matrix: list[list[Any]] | None) -> tuple[int, int]:
    """(cells, null cells) of a matrix; the nulls are counted at C speed, one row at a time."""
    if not matrix:
        return 0, 0
    return sum(len(row) for row in matrix), sum(row.count(None) for row in matrix)


def chunked(pieces: Iterable[str | bytes], size: int) -> Iterator[bytes]:
    """Join rendered pieces into UTF-8 chunks of at least `size` bytes (the last may be shorter): a
    streamed response (and gzip, which flushes per chunk) handles a few large chunks far better than many
    small ones."""
    buffer: list[bytes] = []
    held = 0
    for piece in pieces:
        data = piece.encode() if isinstance(piece, str) else piece
        buffer.append(data)
        held += len(data)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


_SPECIAL_TOKEN = re.compile(r"<[^<>\s]+>|\[[A-Z]+\]")
"""Special tokens as tokenizers spell them: `<s>`, `</s>`, `<pad>`, `[CLS]`."""


def tokens_text(tokens: Iterable[Mapping[str, Any]], skip_special: bool = True) -> str:
    """The text of result tokens: each token's decoded `text`, with word-initial markers ('▁', 'Ġ') read as a
    space (SentencePiece tokenizers decode a single token without its space) and special tokens left out."""
    parts = []
    for t in tokens:
        if skip_special and _SPECIAL_TOKEN.fullmatch(t["token"]):
            continue
        text = str(t.get("text", t["token"]))
        if t["token"][:1] in ("▁", "Ġ") and not text.startswith(" "):
            text = " " + text
        parts.append(text)
    return "".join(parts)
