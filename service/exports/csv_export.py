"""The CSV export: long format, one row per (sequence, side, position, step), then each step score as rows
with side `step_score`; `pandas.read_csv` loads it as it is.

Columns: `sequence` (input index), `side` (`source`, `target` or `step_score`), `position` (row index on that
side; empty for step scores), `token` (the vocabulary entry, or the step score's id), `step` (the absolute
target position explained: attr_pos_start + column), `generated_token` (the target token at that step),
`score` (empty where the result has null).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

from schemas.exports import CSV_COLUMNS, CSV_STEP_SCORE_SIDE
from service.exports.common import count_cells, score_width

_SIDES = (("source", "source", "source_attributions"), ("target", "target", "target_attributions"))
"""(side name, token list, matrix) of each side's rows."""


def _generated(seq: Mapping[str, Any], columns: int) -> list[str]:
    """The target token each column explains (empty past the target, which a result never has)."""
    start, target = seq["attr_pos_start"], seq["target"]
    return [target[start + j]["token"] if start + j < len(target) else "" for j in range(columns)]


def _columns(seq: Mapping[str, Any]) -> int:
    for field in ("source_attributions", "target_attributions"):
        matrix = seq.get(field)
        if matrix:
            return len(matrix[0])
    return max((len(v) for v in (seq.get("step_scores") or {}).values()), default=0)


def render_csv(result: Mapping[str, Any], precision: int | None, chunk_bytes: int) -> Iterator[bytes]:
    """The CSV in UTF-8 chunks of about `chunk_bytes`, rendered as they are sent."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def score(value: float | None) -> float | None:
        return value if value is None or precision is None else round(value, precision)

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    for k, seq in enumerate(result["sequences"]):
        start = seq["attr_pos_start"]
        generated = _generated(seq, _columns(seq))
        steps = [(start + j, token) for j, token in enumerate(generated)]
        for side, tokens_field, matrix_field in _SIDES:
            tokens = seq[tokens_field]
            for i, row in enumerate(seq.get(matrix_field) or ()):
                token = tokens[i]["token"] if i < len(tokens) else ""
                writer.writerows(
                    (k, side, i, token, step, gen, score(value))
                    for (step, gen), value in zip(steps, row, strict=False)
                )
                if buffer.tell() >= chunk_bytes:
                    yield flush()
        for name, values in (seq.get("step_scores") or {}).items():
            writer.writerows(
                (k, CSV_STEP_SCORE_SIDE, "", name, step, gen, score(value))
                for (step, gen), value in zip(steps, values, strict=False)
            )
            if buffer.tell() >= chunk_bytes:
                yield flush()
    yield flush()


def _quoted_length(text: str) -> int:
    """UTF-8 bytes the csv module writes for `text` (quoted when it holds a comma, quote or line break)."""
    size = len(text.encode())
    if any(c in text for c in ',"\n\r'):
        return size + text.count('"') + 2
    return size


def estimate_csv(result: Mapping[str, Any], precision: int | None) -> int:
    """About how many bytes `render_csv` writes, from row counts, token lengths and the mean score width
    (one pass over rows and tokens, none over cells)."""
    width = score_width(result, precision)
    total = len(",".join(CSV_COLUMNS)) + 1
    for k, seq in enumerate(result.get("sequences", ())):
        columns = _columns(seq)
        start = seq["attr_pos_start"]
        generated = _generated(seq, columns)
        step_chars = sum(len(str(start + j)) + _quoted_length(g) for j, g in enumerate(generated))
        fixed = len(str(k)) + 6 + 1  # sequence, six commas, newline
        for side, tokens_field, matrix_field in _SIDES:
            matrix = seq.get(matrix_field) or []
            cells, nulls = count_cells(matrix)
            tokens = seq[tokens_field]
            row_chars = sum(
                len(str(i)) + _quoted_length(tokens[i]["token"] if i < len(tokens) else "")
                for i in range(len(matrix))
            )
            total += cells * (fixed + len(side)) + row_chars * columns + step_chars * len(matrix)
            total += int((cells - nulls) * width)
        for name, values in (seq.get("step_scores") or {}).items():
            present = len(values) - values.count(None)
            total += len(values) * (fixed + len(CSV_STEP_SCORE_SIDE) + _quoted_length(name)) + step_chars
            total += int(present * width)
    return total
