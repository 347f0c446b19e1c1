"""What the catalogue endpoints list: models from the registry, methods and step functions from `schemas`."""

from __future__ import annotations

from schemas.catalogue import MethodList, ModelInfo, ModelList, StepFunctionList
from schemas.defaults import DEFAULT_MODEL
from schemas.methods import METHODS
from schemas.models import ModelEntry
from schemas.step_functions import STEP_FUNCTIONS


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
