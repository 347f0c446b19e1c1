"""The method interface and the explicit registry the engine looks methods up in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from schemas.methods import METHOD_ARGS, MethodArgs
from workers.engine.model_io import SequenceIO
from workers.engine.step_functions import StepFunction


@dataclass
class RawScores:
    """Unreduced scores of a chunk of steps: `[length, n_steps, *unit_dims]`, NaN where undefined."""

    source: torch.Tensor | None
    target: torch.Tensor | None


class AttributionMethod:
    """One attribution method. Class-level facts describe it without loading a model."""

    id: ClassVar[str]
    family: ClassVar[str]
    uses_baselines: ClassVar[bool] = False
    supports_target_attribution: ClassVar[bool] = True
    default_reducers: ClassVar[tuple[str, ...]] = ("vnorm",)
    """Reductions over the trailing unit dimensions, last one first (the reference library's defaults)."""

    def __init__(self, args: MethodArgs) -> None:
        self.args = args

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:  # noqa: ARG002 - for subclasses
        """How to split the attributed steps into chunks computed together; one chunk by default."""
        return [positions]

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: StepFunction, attribute_target: bool
    ) -> RawScores:
        raise NotImplementedError


def mask_after_step(scores: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """Set target rows at or after each column's step position to NaN (they are not in its prefix)."""
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None]
    cols = torch.tensor(positions, device=scores.device)[None, :]
    mask = rows >= cols
    return scores.masked_fill(mask.reshape(*mask.shape, *([1] * (scores.ndim - 2))), float("nan"))


METHODS: dict[str, type[AttributionMethod]] = {}
"""Implemented methods by id; must list the same ids as `schemas.methods.METHODS`."""


def register_method(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator adding a method to the registry; refuses duplicates and ids the catalogue lacks."""
    if cls.id in METHODS:
        raise ValueError(f"method {cls.id!r} is already registered")
    if cls.id not in METHOD_ARGS:
        raise ValueError(f"method {cls.id!r} has no entry in schemas.methods")
    METHODS[cls.id] = cls
    return cls


def build_method(method_id: str, args: dict[str, Any]) -> AttributionMethod:
    cls = METHODS[method_id]
    return cls(METHOD_ARGS[method_id].model_validate(args))
