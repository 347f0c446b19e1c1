"""The attribution result: `GET /v1/jobs/{id}/result`.

Workers build the same shape as plain dicts and store it as orjson bytes; these models document it in
OpenAPI and let tests and clients validate it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Cell = float | list[Any] | None
"""One matrix cell: a score, a list of unreduced scores (granular output), or null where undefined."""


class Token(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    token: str = Field(description="The vocabulary entry, as the reference library shows it (e.g. 'Ġto').")
    text: str = Field(description="The token decoded on its own (e.g. ' to').")


class ResultModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    architecture: str
    is_encoder_decoder: bool


class SequenceAttribution(BaseModel):
    """Scores for one input: rows are source/target positions, columns are attributed steps."""

    model_config = ConfigDict(frozen=True)

    source: list[Token] = Field(description="Encoder input; for decoder-only models, the prompt.")
    target: list[Token] = Field(description="Decoder side; for decoder-only models, prompt + generated.")
    attr_pos_start: int = Field(description="First attributed target position.")
    attr_pos_end: int = Field(description="One past the last attributed target position.")
    source_attributions: list[list[Cell]] | None = Field(
        description="[len(source)][n_attributed]; null for decoder-only models."
    )
    target_attributions: list[list[Cell]] | None = Field(
        description="[len(target)][n_attributed]; null where the target is not attributed; "
        "cells at or after the attributed position are null."
    )
    step_scores: dict[str, list[float | None]] = Field(description="[n_attributed] per requested step score.")
    sequence_scores: dict[str, Any] = Field(default_factory=dict)


class ResultInfo(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    exec_time_s: float
    generation_args: dict[str, Any]
    method_args: dict[str, Any]
    versions: dict[str, str]


class AttributionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    model: ResultModelInfo
    method: str
    attributed_fn: str
    sequences: list[SequenceAttribution]
    info: ResultInfo
