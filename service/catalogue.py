"""What the catalogue endpoints list: models from the registry, methods and step functions from `schemas`."""

from __future__ import annotations

from typing import get_args

from schemas.attribution import HiddenAggregator
from schemas.catalogue import (
    AggregatorList,
    AggregatorSpec,
    MethodList,
    ModelInfo,
    ModelList,
    StepFunctionList,
)
from schemas.defaults import DEFAULT_MODEL
from schemas.methods import METHODS
from schemas.models import ModelEntry
from schemas.step_functions import STEP_FUNCTIONS

AGGREGATOR_DESCRIPTIONS = {
    "vnorm": "L2 norm over the hidden size (the default for gradient methods).",
    "sum": "Sum over the hidden size.",
    "mean": "Mean over the hidden size (for attention: over heads, then layers; its default).",
    "absmax": "The value of largest magnitude, sign kept.",
}
"""What each `aggregation.aggregators` id does; a test keeps it in step with the request schema."""


def list_models(registry: dict[str, ModelEntry]) -> ModelList:
    return ModelList(
        models=[
            ModelInfo(
                id=entry.id,
                description=entry.description,
                architecture=entry.architecture,
                dtype=entry.dtype,
                max_sequence_tokens=entry.max_sequence_tokens,
                default=entry.id == DEFAULT_MODEL,
            )
            for entry in sorted(registry.values(), key=lambda e: e.id)
        ]
    )


def list_methods() -> MethodList:
    return MethodList(methods=list(METHODS.values()))


def list_step_functions() -> StepFunctionList:
    return StepFunctionList(step_functions=list(STEP_FUNCTIONS.values()))


def list_aggregators() -> AggregatorList:
    return AggregatorList(
        aggregators=[
            AggregatorSpec(id=agg_id, description=AGGREGATOR_DESCRIPTIONS.get(agg_id, ""))
            for agg_id in get_args(HiddenAggregator)
        ]
    )
