"""The attribution request: `POST /v1/attributions`.

Names follow the reference library's `model.attribute`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from schemas.aggregators import Aggregator
from schemas.defaults import (
    DEFAULT_ATTRIBUTED_FN,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    MAX_INPUT_CHARS,
    MAX_INPUTS_PER_REQUEST,
    MAX_NEW_TOKENS,
)
from schemas.methods import METHOD_ARGS
from schemas.step_functions import STEP_FUNCTION_SPECS


def _available(kind: str, value: str, allowed: Any) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; available: {', '.join(sorted(allowed))}")


class GenerationArgs(BaseModel):
    """Arguments passed to `model.generate` when no `generated_texts` are forced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, le=MAX_NEW_TOKENS)
    min_new_tokens: int | None = Field(None, ge=0, le=MAX_NEW_TOKENS)
    do_sample: bool = False
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=1)


class AggregationOptions(BaseModel):
    """How raw scores are reduced before they are returned.

    The default is the reference library's: L2 norm over the hidden size (or mean over layers and heads for
    attention), then each attributed step's column scaled to sum 1 over source and target together.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggregators: list[Aggregator] | None = Field(
        None, max_length=1, description="Reduction over the hidden size; null means the method's default."
    )
    normalize: bool = True
    granular: bool = Field(False, description="Return unreduced scores (a list per cell) instead of numbers.")


class AttributionRequest(BaseModel):
    """A feature-attribution job: which model, which method, on which texts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    method: str = DEFAULT_METHOD
    inputs: list[str] = Field(min_length=1, max_length=MAX_INPUTS_PER_REQUEST)
    generated_texts: list[str] | None = Field(None, description="Forced targets, one per input.")
    generation_args: GenerationArgs = GenerationArgs()
    attributed_fn: str = DEFAULT_ATTRIBUTED_FN
    attributed_fn_args: dict[str, Any] = Field(default_factory=dict)
    step_scores: list[str] = Field(default_factory=list)
    attr_pos_start: int | None = Field(None, ge=0)
    attr_pos_end: int | None = Field(None, ge=1)
    attribute_target: bool = False
    include_eos_baseline: bool = False
    method_args: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    contrast_sources: list[str] | None = None
    contrast_targets: list[str] | None = None
    contrast_targets_alignments: list[list[tuple[int, int]]] | None = None
    aggregation: AggregationOptions = AggregationOptions()
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    @field_validator("inputs", "generated_texts")
    @classmethod
    def _text_lengths(cls, texts: list[str] | None) -> list[str] | None:
        for i, text in enumerate(texts or []):
            if len(text) > MAX_INPUT_CHARS:
                raise ValueError(
                    f"text {i} has {len(text)} characters; at most {MAX_INPUT_CHARS} are allowed"
                )
        return texts

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in METHOD_ARGS:
            raise _available("method", method, METHOD_ARGS)
        return method

    @field_validator("method_args")
    @classmethod
    def _method_args(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Validated against the chosen method's own model (errors located under method_args) and stored
        # with defaults filled, so the stored request says exactly what ran.
        method = info.data.get("method")
        if method is None:  # the method itself was invalid; that error is reported already
            return args
        return METHOD_ARGS[method].model_validate(args).model_dump()

    @field_validator("attributed_fn")
    @classmethod
    def _known_attributed_fn(cls, fn: str) -> str:
        attributable = [k for k, spec in STEP_FUNCTION_SPECS.items() if spec.attributable]
        if fn not in attributable:
            raise _available("attributed_fn", fn, attributable)
        return fn

    @field_validator("step_scores")
    @classmethod
    def _known_step_scores(cls, scores: list[str]) -> list[str]:
        for score in scores:
            if score not in STEP_FUNCTION_SPECS:
                raise _available("step score", score, STEP_FUNCTION_SPECS)
        if len(set(scores)) != len(scores):
            raise ValueError("step_scores must not repeat an id")
        return scores

    @model_validator(mode="after")
    def _consistent(self) -> AttributionRequest:
        if self.generated_texts is not None and len(self.generated_texts) != len(self.inputs):
            raise ValueError(
                f"generated_texts has {len(self.generated_texts)} items but inputs has {len(self.inputs)}"
            )
        if self.attr_pos_start is not None and self.attr_pos_end is not None:
            if self.attr_pos_end <= self.attr_pos_start:
                raise ValueError("attr_pos_end must be greater than attr_pos_start")
        if self.attributed_fn_args:
            raise ValueError(f"attributed_fn {self.attributed_fn!r} takes no attributed_fn_args")
        if any(v is not None for v in (self.contrast_sources, self.contrast_targets)) or (
            self.contrast_targets_alignments is not None
        ):
            raise ValueError("contrastive attribution is not available yet: leave contrast_* null")
        return self
