"""Selecting layers or heads by the index forms of method arguments (`schemas.methods.Indices`)."""

from __future__ import annotations

from schemas.errors import InvalidRequestError
from schemas.methods import IndexRange, Indices


def unit_indices(indices: Indices, n_units: int, what: str) -> list[int]:
    """The reference library's index selection (`validate_indices`): one index, a `[start, end)` range or a
    list; negative indices count from the end; out of range or repeated indices are a request error."""
    if isinstance(indices, IndexRange):
        start, end = (i + n_units if i < 0 else i for i in (indices.start, indices.end))
        if not 0 <= start < end <= n_units:
            raise InvalidRequestError(
                f"{what} range [{indices.start}, {indices.end}) is outside the model's {n_units} {what}"
            )
        return list(range(start, end))
    chosen = [indices] if isinstance(indices, int) else list(indices)
    if any(not -n_units <= i < n_units for i in chosen):
        raise InvalidRequestError(
            f"{what} index out of range: the model has {n_units} {what} (0-{n_units - 1})"
        )
    resolved = [i + n_units if i < 0 else i for i in chosen]
    if len(set(resolved)) != len(resolved):
        raise InvalidRequestError(f"{what} indices must not repeat")
    return resolved
