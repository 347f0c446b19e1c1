"""What the catalogue endpoints list: models from the registry; methods, step functions and aggregators from
their catalogues in `schemas`."""

from __future__ import annotations

from schemas.aggregation import AGGREGATION_STEP_SPECS
from schemas.aggregators import AGGREGATOR_SPECS
from schemas.catalogue import AggregatorList, MethodList, ModelInfo, ModelList, StepFunctionList
from schemas.defaults import DEFAULT_MODEL
from schemas.methods import METHOD_SPECS
from schemas.models import ModelEntry
from schemas.step_functions import STEP_FUNCTION_SPECS


def list_models(registry: dict[str, ModelEntry]) -> ModelList:
    return ModelList(
        models=[
            ModelInfo(
                id=entry.id,
                description=entry.description,
                is_encoder_decoder=entry.is_encoder_decoder,
                dtype=entry.dtype,
                max_sequence_tokens=entry.max_sequence_tokens,
                default=entry.id == DEFAULT_MODEL,
            )
            for entry in sorted(registry.values(), key=lambda e: e.id)
        ]
    )


def list_methods() -> MethodList:
    return MethodList(methods=list(METHOD_SPECS.values()))


def list_step_functions() -> StepFunctionList:
    return StepFunctionList(step_functions=list(STEP_FUNCTION_SPECS.values()))


def list_aggregators() -> AggregatorList:
    return AggregatorList(
        aggregators=list(AGGREGATOR_SPECS.values()), steps=list(AGGREGATION_STEP_SPECS.values())
    )
