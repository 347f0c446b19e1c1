"""The worker's method registry: every implemented method class by id, checked against the catalogue.

A method is added by writing its class in `workers/methods/<family>.py`, its catalogue entry in
`schemas/methods.py`, and listing the class here; a test checks that both sides list the same ids.
"""

from __future__ import annotations

from typing import Any

from schemas.methods import METHOD_ARGS
from workers.methods.base import AttributionMethod
from workers.methods.gradient import (
    DeepLift,
    DiscretizedIntegratedGradients,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SequentialIntegratedGradients,
)
from workers.methods.internals import Attention
from workers.methods.layer import LayerDeepLift, LayerGradientXActivation, LayerIntegratedGradients
from workers.methods.none import Dummy
from workers.methods.perturbation import Lime, Occlusion, Reagent, ValueZeroing


def _registry(*classes: type[AttributionMethod]) -> dict[str, type[AttributionMethod]]:
    registry: dict[str, type[AttributionMethod]] = {}
    for cls in classes:
        if cls.id in registry:
            raise ValueError(f"method {cls.id!r} is listed twice")
        if cls.id not in METHOD_ARGS:
            raise ValueError(f"method {cls.id!r} has no entry in schemas.methods")
        registry[cls.id] = cls
    return registry


METHOD_REGISTRY: dict[str, type[AttributionMethod]] = _registry(
    Saliency,
    InputXGradient,
    IntegratedGradients,
    DeepLift,
    GradientShap,
    DiscretizedIntegratedGradients,
    SequentialIntegratedGradients,
    LayerIntegratedGradients,
    LayerGradientXActivation,
    LayerDeepLift,
    Attention,
    Occlusion,
    Lime,
    ValueZeroing,
    Reagent,
    Dummy,
)
"""Implemented methods by id; lists the same ids as `schemas.methods.METHOD_SPECS`."""


def build_method(method_id: str, args: dict[str, Any]) -> AttributionMethod:
    """The method `method_id` with its arguments validated by the catalogue's parameter model."""
    return METHOD_REGISTRY[method_id](METHOD_ARGS[method_id].model_validate(args))
