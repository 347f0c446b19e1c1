"""Aggregation steps: the reference library's `aggregate(...)` chains, as JSON.

A chain is a list of steps applied in order, each named by its `aggregator` as in the reference:
`scores` reduces one unit dimension (hidden size, heads, layers) and normalises; `subwords`, `spans` and
`split` merge tokens; `slices` keeps parts of the source and target; `pair` subtracts another finished job's
scores. A request carries token-level steps in `aggregation.steps`; `POST /v1/jobs/{id}/aggregate` takes any
chain.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.aggregators import Aggregator
from schemas.defaults import MAX_AGGREGATION_STEPS, MAX_SPANS, MAX_TOKEN_INDEX
from schemas.methods import Indices

Position = Annotated[int, Field(ge=0, le=MAX_TOKEN_INDEX)]

Span = Annotated[tuple[Position, Position], Field(description="`[start, end)` token positions.")]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ascending(spans: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
    """The reference's rule: non-empty spans, in ascending order, not overlapping."""
    previous_end = 0
    for start, end in spans or []:
        if end <= start:
            raise ValueError(f"span [{start}, {end}) is empty: end must be greater than start")
        if start < previous_end:
            raise ValueError("spans must be in ascending order and must not overlap")
        previous_end = end
    return spans


SpanList = Annotated[list[Span], Field(min_length=1, max_length=MAX_SPANS)]


class ScoresStep(_Step):
    """Reduce the last unit dimension with `aggregate_fn`, then normalise (the reference's `scores`)."""

    aggregator: Literal["scores"]
    aggregate_fn: Aggregator | None = Field(
        None,
        description="How to reduce the last remaining unit dimension; null means the method's default for it "
        "(`default_aggregators` in GET /v1/methods). When no unit dimension is left, leave it null: the step "
        "then only normalises or rescales.",
    )
    select_idx: Indices | None = Field(
        None,
        description="Keep these units of the dimension before reducing it; one index keeps that unit alone "
        "and drops the dimension (the reference's `select_idx`, e.g. one attention head).",
    )
    normalize: bool | None = Field(
        None,
        description="Scale each step's column to sum 1 (absolute values) over source and target; null means "
        "true unless `rescale`.",
    )
    rescale: bool = Field(False, description="Divide by the largest absolute score instead of normalising.")

    @model_validator(mode="after")
    def _one_scaling(self) -> ScoresStep:
        if self.normalize and self.rescale:
            raise ValueError("normalize and rescale cannot both be true")
        return self


_SPAN_FN = Field(
    None,
    description="How merged positions and steps are combined; null means the reference's defaults: the "
    "value of largest magnitude (`absmax`) for attributions, and each step score's own (e.g. `prod` for "
    "probability, `sum` for entropy; `span_aggregate` in GET /v1/step-functions).",
)


class SpansStep(_Step):
    """Merge the given spans of source and target tokens into one position each (the reference's `spans`)."""

    aggregator: Literal["spans"]
    source_spans: SpanList | None = None
    target_spans: SpanList | None = Field(
        None, description="Target positions; generated positions merge the steps' columns too."
    )
    aggregate_fn: Aggregator | None = _SPAN_FN

    _check = field_validator("source_spans", "target_spans")(_ascending)


class SubwordsStep(_Step):
    """Merge subword tokens into words, found by their special symbol (the reference's `subwords`)."""

    aggregator: Literal["subwords"]
    special_chars: list[Annotated[str, Field(min_length=1, max_length=8)]] = Field(
        ["▁"],
        min_length=1,
        max_length=16,
        description="Symbols that mark a word's start ('▁' for SentencePiece, 'Ġ' and 'Ċ' for GPT-2's "
        "byte-level BPE), or its continuation with `is_suffix_symbol` (WordPiece's '##').",
    )
    is_suffix_symbol: bool = False
    aggregate_source: bool = True
    aggregate_target: bool = True
    aggregate_fn: Aggregator | None = _SPAN_FN


class SplitStep(_Step):
    """Merge the tokens between the matches of a regular expression, e.g. sentences or lines (the
    reference's `split`)."""

    aggregator: Literal["split"]
    split_pattern: str = Field(
        min_length=1,
        max_length=200,
        description="A Python regular expression matched on the tokens' joined text, e.g. '\\\\.' for "
        "sentences.",
    )
    split_mode: Literal["single", "start", "end"] = Field(
        "single",
        description="Matched tokens stand alone (`single`), start the next part (`start`) or end the "
        "previous one (`end`).",
    )
    aggregate_source: bool = True
    aggregate_target: bool = True
    aggregate_fn: Aggregator | None = _SPAN_FN

    @field_validator("split_pattern")
    @classmethod
    def _pattern(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.match(""):
            raise ValueError("the pattern matches the empty string: it would split between every character")
        return pattern


class SlicesStep(_Step):
    """Keep only the given spans of source and target (the reference's `slices`); the generated part of the
    target is always kept."""

    aggregator: Literal["slices"]
    source_spans: SpanList | None = None
    target_spans: SpanList | None = Field(
        None,
        description="Target positions to keep; for decoder-only models they also slice the prompt (the "
        "source).",
    )

    _check = field_validator("source_spans", "target_spans")(_ascending)

    @model_validator(mode="after")
    def _something(self) -> SlicesStep:
        if self.source_spans is None and self.target_spans is None:
            raise ValueError("give source_spans, target_spans or both")
        return self


class PairStep(_Step):
    """The difference with another finished job of the same shape: its scores minus this job's (the
    reference's `pair`, as in `this.aggregate("pair", paired_attr=other)`); tokens that differ show as
    'a → b'."""

    aggregator: Literal["pair"]
    paired_job_id: str = Field(min_length=1, max_length=100)


TokenStep = Annotated[SpansStep | SubwordsStep | SplitStep | SlicesStep, Field(discriminator="aggregator")]
"""A step that works on token-level scores, allowed in a request's `aggregation.steps`."""

AggregationStep = Annotated[
    ScoresStep | SpansStep | SubwordsStep | SplitStep | SlicesStep | PairStep,
    Field(discriminator="aggregator"),
]
"""Any step of a chain."""


class AggregateRequest(BaseModel):
    """`POST /v1/jobs/{id}/aggregate`: a chain applied to a finished job's stored scores, without the model.

    A chain that starts with `scores` starts from the unreduced scores, kept when the job's request set
    `aggregation.keep_granular` (always for methods without unit dimensions); any other chain starts from the
    job's token-level scores before its own `aggregation.steps`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[AggregationStep] = Field(min_length=1, max_length=MAX_AGGREGATION_STEPS)


class AggregationStepSpec(BaseModel):
    """One entry of `GET /v1/aggregators`' `steps`: a kind of aggregation step and its fields."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str
    in_requests: bool = Field(description="Allowed in a request's `aggregation.steps` (token-level steps).")
    parameters: dict[str, Any] = Field(description="JSON schema of the step.")


_STEP_MODELS: tuple[type[_Step], ...] = (ScoresStep, SubwordsStep, SpansStep, SplitStep, SlicesStep, PairStep)
_TOKEN_STEP_MODELS = (SubwordsStep, SpansStep, SplitStep, SlicesStep)

AGGREGATION_STEP_SPECS: dict[str, AggregationStepSpec] = {
    spec.id: spec
    for spec in (
        AggregationStepSpec(
            id=get_args(model.model_fields["aggregator"].annotation)[0],
            description=" ".join((model.__doc__ or "").split()),
            in_requests=model in _TOKEN_STEP_MODELS,
            parameters=model.model_json_schema(),
        )
        for model in _STEP_MODELS
    )
}
"""Every kind of aggregation step, by its `aggregator` id."""
