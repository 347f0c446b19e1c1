"""Bodies of the catalogue endpoints: `GET /v1/models`, `/v1/methods`, `/v1/step-functions` and
`/v1/aggregators`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.aggregation import AggregationStepSpec
from schemas.aggregators import AggregatorSpec
from schemas.methods import MethodSpec
from schemas.step_functions import StepFunctionSpec


class ModelInfo(BaseModel):
    """A served model, as clients see it (no file paths)."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str = ""
    is_encoder_decoder: bool | None = Field(
        None,
        description="Null when the registry leaves it to the model's config (read by the worker on load).",
    )
    dtype: str
    max_sequence_tokens: int | None = None
    default: bool = Field(False, description="Used when a request names no model.")


class ModelList(BaseModel):
    model_config = ConfigDict(frozen=True)

    models: list[ModelInfo]


class MethodList(BaseModel):
    model_config = ConfigDict(frozen=True)

    methods: list[MethodSpec]


class StepFunctionList(BaseModel):
    model_config = ConfigDict(frozen=True)

    step_functions: list[StepFunctionSpec]


class AggregatorList(BaseModel):
    model_config = ConfigDict(frozen=True)

    aggregators: list[AggregatorSpec] = Field(description="Reduction functions (`aggregate_fn`).")
    steps: list[AggregationStepSpec] = Field(
        description="Kinds of aggregation step (`aggregation.steps`, `POST /v1/jobs/{id}/aggregate`)."
    )
