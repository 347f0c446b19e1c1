"""The JSON export: the stored bytes as they are, or a result rendered one sequence at a time (with scores
rounded when `precision` is given), byte for byte what orjson writes for the whole result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from service.exports.common import SCORE_FIELDS, count_cells, rounded, score_width


def _sequence(seq: Mapping[str, Any], precision: int | None) -> bytes:
    if precision is None:
        return orjson.dumps(seq)
    return orjson.dumps({k: rounded(v, precision) if k in SCORE_FIELDS else v for k, v in seq.items()})


def render_json(result: Mapping[str, Any], precision: int | None) -> Iterator[bytes]:
    """The result's JSON in pieces: each top-level member, and each sequence on its own."""
    yield b"{"
    for index, (key, value) in enumerate(result.items()):
        separator = b"," if index else b""
        if key == "sequences" and isinstance(value, list):
            yield separator + b'"sequences":['
            for i, seq in enumerate(value):
                yield (b"," if i else b"") + _sequence(seq, precision)
            yield b"]"
        else:
            yield separator + orjson.dumps(key) + b":" + orjson.dumps(value)
    yield b"}"


def estimate_json(result: Mapping[str, Any], precision: int | None) -> int:
    """About how many bytes `render_json` writes: the members other than scores are measured, the scores
    counted and multiplied by their mean width."""
    width = score_width(result, precision)
    total = len(orjson.dumps({k: v for k, v in result.items() if k != "sequences"}))
    for seq in result.get("sequences", ()):
        total += len(orjson.dumps({k: v for k, v in seq.items() if k not in SCORE_FIELDS})) + 100
        for field in ("source_attributions", "target_attributions"):
            matrix = seq.get(field) or []
            cells, nulls = count_cells(matrix)
            units = _units(matrix)
            total += int((cells - nulls) * units * (width + 1) + nulls * 5 + len(matrix) * 3)
        for values in (seq.get("step_scores") or {}).values():
            total += int(len(values) * (width + 1)) + 40
        total += len(orjson.dumps(seq.get("sequence_scores") or {}))
    return total


def _units(matrix: list[list[Any]]) -> int:
    """Scores per cell: 1, or the size of a granular cell (brackets and commas counted as one more)."""
    for row in matrix:
        for cell in row:
            if cell is None:
                continue
            if not isinstance(cell, list):
                return 1
            flat = orjson.dumps(cell)
            return max(1, flat.count(b",") + 1)
    return 1
