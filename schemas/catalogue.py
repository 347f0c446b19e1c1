"""Bodies of the catalogue and health endpoints: `GET /v1/models`, `/v1/methods`, `/v1/step-functions`,
`/v1/aggregators`, `/healthz`, `/readyz`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.methods import MethodSpec
from schemas.step_functions import StepFunctionSpec


class ModelInfo(BaseModel):
    """A served model, as clients see it (no file paths)."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str = ""
    architecture: Literal["causal", "seq2seq"] | None = Field(
        None, description="Null until a worker loads it."
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


class AggregatorSpec(BaseModel):
    """One entry of `GET /v1/aggregators`: a value for `aggregation.aggregators`."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str


class AggregatorList(BaseModel):
    model_config = ConfigDict(frozen=True)

    aggregators: list[AggregatorSpec]


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Redis answers and at least one worker is alive."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ready"] = "ready"
    workers: int = Field(description="Live workers.")
    models_without_workers: list[str] = Field(
        description="Models no live worker listens for: their jobs wait."
    )
