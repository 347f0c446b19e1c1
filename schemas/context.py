"""Context attribution (PECoRe): `POST /v1/attribute-context` and its result.

Names follow the reference library's `inseq attribute-context` arguments and its saved output, so files from
either can be compared. The job runs in two parts: context-sensitive token identification (CTI: a
contrastive step function compares each generated token's prediction with and without the context) and
contextual cues imputation (CCI: each selected token is attributed to the context tokens with a contrastive
attributed function).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from typing_extensions import TypedDict

from schemas.attribution import CallbackUrl, GenerationArgs, Text
from schemas.defaults import DEFAULT_MODEL, MAX_INPUT_CHARS
from schemas.methods import METHOD_ARGS
from schemas.step_functions import STEP_FUNCTION_SPECS

Template = Annotated[str, Field(min_length=1, max_length=MAX_INPUT_CHARS)]

DEFAULT_CONTEXT_METHOD = "saliency"
DEFAULT_CONTEXT_SENSITIVITY_METRIC = "kl_divergence"
DEFAULT_CONTEXT_ATTRIBUTED_FN = "contrast_prob_diff"


def _contrastive(kind: str, fn: str) -> str:
    contrastive = [k for k, spec in STEP_FUNCTION_SPECS.items() if spec.contrastive]
    if fn not in contrastive:
        raise ValueError(f"{kind} must be a contrastive step function; available: {', '.join(contrastive)}")
    return fn


class ContextAttributionRequest(BaseModel):
    """A PECoRe context-attribution job (the reference's `inseq attribute-context`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    input_current_text: Text = Field(description="The input (prompt or source) formatted as {current}.")
    input_context_text: Text | None = Field(None, description="The input context, formatted as {context}.")
    input_template: Template | None = Field(
        None, description="Default '{context} {current}' with an input context, else '{current}'."
    )
    output_context_text: Text | None = Field(None, description="An output context, formatted as {context}.")
    output_current_text: Text | None = Field(
        None, description="The output to explain, forced; generated from the full input when null."
    )
    output_template: Template | None = Field(
        None, description="Default '{context} {current}' with an output context, else '{current}'."
    )
    contextless_input_current_text: Template | None = Field(
        None, description="The input without context; must contain {current} (default '{current}')."
    )
    contextless_output_current_text: Template | None = Field(
        None, description="The output without context; must contain {current} (default '{current}')."
    )
    context_sensitivity_metric: str = Field(
        DEFAULT_CONTEXT_SENSITIVITY_METRIC,
        description="A contrastive step function scoring each token (CTI).",
    )
    context_sensitivity_std_threshold: float = Field(
        1.0,
        ge=0,
        le=100,
        description="Tokens this many standard deviations above the mean CTI score are selected.",
    )
    context_sensitivity_topk: int | None = Field(None, ge=1, le=10_000, description="Then keep the top k.")
    attribution_method: str = Field(
        DEFAULT_CONTEXT_METHOD, description="Any method id of GET /v1/methods (CCI)."
    )
    attributed_fn: str = Field(
        DEFAULT_CONTEXT_ATTRIBUTED_FN,
        description="A contrastive step function attributed for each token (CCI).",
    )
    attribution_std_threshold: float = Field(
        1.0, ge=0, le=100, description="Context tokens this many standard deviations above the mean are cues."
    )
    attribution_topk: int | None = Field(None, ge=1, le=10_000, description="Then keep the top k cues.")
    handle_output_context_strategy: Literal["auto", "pre", "manual"] = Field(
        "auto",
        description="When the output template has {context} and no output context is given: `auto` splits "
        "the generation automatically, `pre` refuses; `manual` (the reference's default, which asks a "
        "person at the terminal) is refused by a service.",
    )
    special_tokens_to_keep: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32
    )
    decoder_input_output_separator: str = Field(" ", max_length=16)
    contextless_output_next_tokens: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=10_000,
        description="Per selected token, the next token forced in the contextless output instead of the "
        "generated one.",
    )
    generation_args: GenerationArgs = GenerationArgs()
    method_args: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    callback_url: CallbackUrl | None = Field(
        None, description="As in `POST /v1/attributions`: the job's final record is POSTed here when it ends."
    )

    @field_validator("context_sensitivity_metric")
    @classmethod
    def _cti_metric(cls, fn: str) -> str:
        return _contrastive("context_sensitivity_metric", fn)

    @field_validator("attributed_fn")
    @classmethod
    def _cci_fn(cls, fn: str) -> str:
        if not STEP_FUNCTION_SPECS.get(fn) or not STEP_FUNCTION_SPECS[fn].attributable:
            raise ValueError(f"attributed_fn {fn!r} is not an attributable step function")
        return fn

    @field_validator("attribution_method")
    @classmethod
    def _method(cls, method: str) -> str:
        if method not in METHOD_ARGS:
            raise ValueError(f"unknown method {method!r}; available: {', '.join(sorted(METHOD_ARGS))}")
        return method

    @field_validator("method_args")
    @classmethod
    def _method_args(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        method = info.data.get("attribution_method")
        return args if method is None else METHOD_ARGS[method].model_validate(args).model_dump()

    @model_validator(mode="after")
    def _consistent(self) -> ContextAttributionRequest:
        for name in (
            "input_template",
            "output_template",
            "contextless_input_current_text",
            "contextless_output_current_text",
        ):
            template = getattr(self, name)
            if template is not None and "{current}" not in template:
                raise ValueError(f"{name} must contain the {{current}} placeholder")
        if (
            self.input_template is not None
            and "{context}" in self.input_template
            and not self.input_context_text
        ):
            raise ValueError("input_template has the {context} placeholder: give input_context_text")
        if self.output_template is not None and "{context}" in self.output_template:
            if self.output_template.find("{context}") > self.output_template.find("{current}"):
                raise ValueError("the {context} placeholder must come before {current} in output_template")
        if self.handle_output_context_strategy == "manual":
            raise ValueError(
                "handle_output_context_strategy 'manual' asks a person at the terminal to split the output "
                "context from the output, which a service cannot do: use 'auto', or 'pre' with "
                "output_context_text"
            )
        needs_output_context = self.output_template is not None and "{context}" in self.output_template
        if (
            self.handle_output_context_strategy == "pre"
            and needs_output_context
            and not self.output_context_text
        ):
            raise ValueError(
                "handle_output_context_strategy 'pre' with {context} in output_template needs "
                "output_context_text"
            )
        return self


class CCIScores(TypedDict):
    """One context-sensitive token and its contextual cues (the reference's `CCIOutput`)."""

    cti_idx: int
    cti_token: str
    cti_score: float
    contextual_output: str
    contrast_token: str | None
    contextless_output: str | None
    input_context_scores: list[float] | None
    output_context_scores: list[float] | None
    input_context_cues: Annotated[
        list[int], Field(description="Indices of input context tokens past the attribution threshold.")
    ]
    output_context_cues: Annotated[
        list[int], Field(description="Indices of output context tokens past the attribution threshold.")
    ]
    cci_threshold: float


class ContextAttributionResult(TypedDict):
    """The result of a context-attribution job: the reference's saved output, plus the thresholds, the
    selected indices and a text rendering like the reference's."""

    id: str
    model: dict[str, Any]
    input_context: str | None
    input_context_tokens: list[str] | None
    output_context: str | None
    output_context_tokens: list[str] | None
    output_current: str
    output_current_tokens: list[str]
    cti_scores: list[float]
    cti_threshold: float
    cti_selected: Annotated[list[int], Field(description="Indices of the context-sensitive tokens, ranked.")]
    cci_scores: list[CCIScores]
    text: Annotated[str, Field(description="The reference's text rendering of the result.")]
    info: dict[str, Any]
