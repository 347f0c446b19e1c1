"""The attribution request: `POST /v1/attributions`.

Names follow the reference library's `model.attribute`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.aggregation import TokenStep
from schemas.aggregators import Aggregator
from schemas.defaults import (
    DEFAULT_ATTRIBUTED_FN,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    MAX_AGGREGATION_STEPS,
    MAX_INPUT_CHARS,
    MAX_INPUTS_PER_REQUEST,
    MAX_NEW_TOKENS,
    MAX_TOKEN_ID,
    MAX_TOKEN_INDEX,
)
from schemas.methods import METHOD_ARGS, METHOD_SPECS
from schemas.scores.archive import RawPrecision
from schemas.step_functions import STEP_FUNCTION_PARAMS, STEP_FUNCTION_SPECS

Text = Annotated[str, Field(min_length=1)]
"""An input, forced target or contrastive text: never empty (an empty text has no token to attribute)."""

TokenIndex = Annotated[int, Field(ge=0, le=MAX_TOKEN_INDEX)]


def _available(kind: str, value: str, allowed: Any) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; available: {', '.join(sorted(allowed))}")


def _validated(model: type[BaseModel], data: dict[str, Any], *loc: str | int) -> dict[str, Any]:
    """`data` validated by `model`, defaults filled; errors are located under `loc` inside the field."""
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as exc:
        errors = [{**error, "loc": (*loc, *error["loc"])} for error in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, errors) from None  # type: ignore[arg-type]


def _args_of(
    models: Mapping[str, type[BaseModel]], chosen: str | None, args: dict[str, Any]
) -> dict[str, Any]:
    """The arguments of the chosen method or function, validated by its own model (errors located under the
    field) and stored with defaults filled, so the stored request says exactly what ran."""
    if chosen is None:  # the id itself was invalid; that error is reported already
        return args
    return _validated(models[chosen], args)


class GenerationArgs(BaseModel):
    """Arguments passed to `model.generate` when no `generated_texts` are forced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, le=MAX_NEW_TOKENS)
    min_new_tokens: int | None = Field(None, ge=0, le=MAX_NEW_TOKENS)
    do_sample: bool = False
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=1, le=MAX_TOKEN_INDEX)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=1, le=MAX_TOKEN_INDEX)
    forced_bos_token_id: int | None = Field(
        None,
        ge=0,
        le=MAX_TOKEN_ID,
        description="First generated token (multilingual models: set from target_lang when null).",
    )


class AggregationOptions(BaseModel):
    """How raw scores are reduced before they are returned, and what is kept for re-aggregation.

    The default is the reference library's: L2 norm over the hidden size (or mean over heads, then layers for
    attention), then each attributed step's column scaled to sum 1 over source and target together. `steps`
    then merge or slice tokens, as the reference's `aggregate(...)` chains do.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggregators: list[Aggregator] | None = Field(
        None,
        min_length=1,
        max_length=2,
        description="One aggregator for every unit dimension of the method (its `unit_dims` in "
        "`GET /v1/methods`), or one per dimension in that order (attention: heads, then layers); null means "
        "the method's default.",
    )
    normalize: bool = Field(
        True, description="After each reduction, scale each step's column to sum 1 (false when `rescale`)."
    )
    rescale: bool = Field(
        False, description="After each reduction, divide by the sequence's largest absolute score instead."
    )
    granular: bool = Field(False, description="Return unreduced scores (a list per cell) instead of numbers.")
    keep_granular: bool = Field(
        False,
        description="Keep the unreduced scores beside the result (up to the worker's size budget), so that "
        "`POST /v1/jobs/{id}/aggregate` can reduce them another way without running the model again.",
    )
    granular_precision: RawPrecision = Field(
        "float16",
        description="How kept unreduced scores are stored: float16 (scaled to their largest magnitude; "
        "about 3 significant digits) or float32 (twice the size, exact).",
    )
    steps: list[TokenStep] = Field(
        default_factory=list,
        max_length=MAX_AGGREGATION_STEPS,
        description="Token-level steps applied in order after the reduction: `subwords`, `spans`, `split`, "
        "`slices` (see `POST /v1/jobs/{id}/aggregate`, which also takes `scores` and `pair`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _rescale_replaces_normalize(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rescale") is True and "normalize" not in data:
            return {**data, "normalize": False}
        return data

    @model_validator(mode="after")
    def _one_scaling(self) -> AggregationOptions:
        if self.normalize and self.rescale:
            raise ValueError("normalize and rescale cannot both be true")
        return self


def _http_url(url: str) -> str:
    """An absolute http(s) URL, kept as given (its host is checked against an allow-list when submitted)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    _ = parts.port  # ValueError for a port that is not a number in 0-65535
    return url


CallbackUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_http_url)]
"""Where a job's final record is POSTed when it ends."""


class AttributionRequest(BaseModel):
    """A feature-attribution job: which model, which method, on which texts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, min_length=1, max_length=200)
    method: str = DEFAULT_METHOD
    inputs: list[Text] = Field(min_length=1, max_length=MAX_INPUTS_PER_REQUEST)
    generated_texts: list[Text] | None = Field(None, description="Forced targets, one per input.")
    generate_from_target_prefix: bool = Field(
        False,
        description="Treat generated_texts as target prefixes and continue generating from them "
        "(decoder-only: the prompt and the prefix; encoder-decoder: the decoder's prefix).",
    )
    generation_args: GenerationArgs = GenerationArgs()
    attributed_fn: str = DEFAULT_ATTRIBUTED_FN
    attributed_fn_args: dict[str, Any] = Field(
        default_factory=dict,
        validate_default=True,
        description="Arguments of the attributed function (its `parameters` in GET /v1/step-functions).",
    )
    step_scores: list[str] = Field(default_factory=list)
    step_scores_args: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        validate_default=True,
        description='Arguments of each step score, by id (e.g. {"kl_divergence": {"top_k": 10}}); '
        "every requested score is stored with its defaults filled in.",
    )
    attr_pos_start: int | None = Field(None, ge=0, le=MAX_TOKEN_INDEX)
    attr_pos_end: int | None = Field(None, ge=1, le=MAX_TOKEN_INDEX)
    attribute_target: bool = False
    include_eos_baseline: bool = False
    method_args: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    contrast_sources: list[Text] | None = Field(
        None,
        description="Encoder-decoder models: another source text per input, for contrastive step functions.",
    )
    contrast_targets: list[Text] | None = Field(
        None,
        description="Another target text per input, for contrastive step functions; for decoder-only models "
        "the full text, prompt included.",
    )
    contrast_targets_alignments: list[list[tuple[TokenIndex, TokenIndex]]] | None = Field(
        None,
        description="Per input, (target position, contrast target position) pairs; by default positions are "
        "aligned 1:1 from the end of both sequences, as the reference library does.",
        max_length=MAX_INPUTS_PER_REQUEST,
    )
    source_lang: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="Multilingual translation models (M2M100, NLLB, mBART-50): the source language code.",
    )
    target_lang: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="Multilingual translation models: the target language code; generation starts with it.",
    )
    skip_special_tokens: bool = Field(
        False,
        description="Encode every text without the tokenizer's special tokens, and strip special-token "
        "strings from the texts first (the reference's option; the decoder start token is still prepended).",
    )
    clean_special_chars: bool = Field(
        False,
        description="Give each token's `token` as readable text ('Ġto' becomes ' to'); scores are unchanged.",
    )
    aggregation: AggregationOptions = AggregationOptions()
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    callback_url: CallbackUrl | None = Field(
        None,
        description="When the job ends, the API POSTs its final record here, signed in `Seqattr-Signature` "
        "(`t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>`); the host must be in the service's "
        "`SEQATTR_CALLBACK_ALLOWED_HOSTS`.",
    )

    @field_validator("inputs", "generated_texts", "contrast_sources", "contrast_targets")
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
        return _args_of(METHOD_ARGS, info.data.get("method"), args)

    @field_validator("attributed_fn")
    @classmethod
    def _known_attributed_fn(cls, fn: str) -> str:
        attributable = [k for k, spec in STEP_FUNCTION_SPECS.items() if spec.attributable]
        if fn in STEP_FUNCTION_SPECS and fn not in attributable:
            raise ValueError(
                f"step function {fn!r} cannot be attributed (use it in step_scores); "
                f"attributable: {', '.join(sorted(attributable))}"
            )
        if fn not in attributable:
            raise _available("attributed_fn", fn, attributable)
        return fn

    @field_validator("attributed_fn_args")
    @classmethod
    def _attributed_fn_args(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _args_of(STEP_FUNCTION_PARAMS, info.data.get("attributed_fn"), args)

    @field_validator("step_scores")
    @classmethod
    def _known_step_scores(cls, scores: list[str]) -> list[str]:
        for score in scores:
            if score not in STEP_FUNCTION_SPECS:
                raise _available("step score", score, STEP_FUNCTION_SPECS)
        if len(set(scores)) != len(scores):
            raise ValueError("step_scores must not repeat an id")
        return scores

    @field_validator("step_scores_args")
    @classmethod
    def _step_scores_args(
        cls, args: dict[str, dict[str, Any]], info: ValidationInfo
    ) -> dict[str, dict[str, Any]]:
        scores = info.data.get("step_scores")
        if scores is None:
            return args
        extra = sorted(set(args) - set(scores))
        if extra:
            raise ValueError(f"step_scores_args names {', '.join(map(repr, extra))}, not in step_scores")
        return {
            score: _validated(STEP_FUNCTION_PARAMS[score], args.get(score, {}), score) for score in scores
        }

    @model_validator(mode="after")
    def _consistent(self) -> AttributionRequest:
        for name in (
            "generated_texts",
            "contrast_sources",
            "contrast_targets",
            "contrast_targets_alignments",
        ):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.inputs):
                raise ValueError(f"{name} has {len(values)} items but inputs has {len(self.inputs)}")
        if self.attr_pos_start is not None and self.attr_pos_end is not None:
            if self.attr_pos_end <= self.attr_pos_start:
                raise ValueError("attr_pos_end must be greater than attr_pos_start")
        if self.generate_from_target_prefix and self.generated_texts is None:
            raise ValueError("generate_from_target_prefix needs generated_texts (the prefixes to continue)")
        self._check_contrast()
        self._check_aggregators()
        return self

    def _check_aggregators(self) -> None:
        chosen = self.aggregation.aggregators
        if chosen is None or self.method not in METHOD_SPECS:
            return
        dims = METHOD_SPECS[self.method].unit_dims
        if len(chosen) > 1 and len(chosen) != len(dims):
            named = ", ".join(dims) or "none"
            raise ValueError(
                f"aggregation.aggregators has {len(chosen)} items; method {self.method!r} has "
                f"{len(dims)} unit dimensions ({named}): give one aggregator, or one per dimension"
            )

    def _check_contrast(self) -> None:
        if self.contrast_targets_alignments is not None and self.contrast_targets is None:
            raise ValueError("contrast_targets_alignments needs contrast_targets")
        contrastive = [
            fn for fn in dict.fromkeys((self.attributed_fn, *self.step_scores)) if is_contrastive(fn)
        ]
        given = [name for name in ("contrast_sources", "contrast_targets") if getattr(self, name) is not None]
        if contrastive and not given:
            raise ValueError(
                f"{', '.join(contrastive)} compare with contrastive inputs: give contrast_targets "
                "(or, for encoder-decoder models, contrast_sources)"
            )
        if given and not contrastive:
            raise ValueError(
                f"{' and '.join(given)} are read only by contrastive step functions "
                f"({', '.join(fn for fn in STEP_FUNCTION_SPECS if is_contrastive(fn))}); "
                "name one as attributed_fn or in step_scores"
            )
        if self.attributed_fn == "kl_divergence" and not self.attributed_fn_args["contrast_force_inputs"]:
            raise ValueError(
                "kl_divergence as attributed_fn compares distributions computed on different inputs: set "
                'attributed_fn_args {"contrast_force_inputs": true} to attribute it anyway'
            )


def is_contrastive(step_function: str) -> bool:
    """Whether a step function compares with contrastive inputs."""
    return STEP_FUNCTION_SPECS[step_function].contrastive
