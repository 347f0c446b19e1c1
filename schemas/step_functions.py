"""The step-function catalogue: scores computed at every generation step, most of them attributable.

Each id, its description, whether it can be attributed, whether it compares with contrastive inputs, and
the model of its arguments live here, once. The workers implement each id in
`workers/engine/step_functions.py`; a test checks both sides list the same ids. Names and defaults follow
the reference library's step functions.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.aggregators import Aggregator
from schemas.defaults import MAX_TOKEN_INDEX

MAX_MC_DROPOUT_STEPS = 100
"""Upper bound on `mc_dropout_prob_avg`'s `n_mcd_steps` (each is one more forward over the sequence)."""


class StepFunctionParams(BaseModel):
    """Base of every step function's arguments: unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(StepFunctionParams):
    """A step function without arguments."""


class ProbabilityParams(StepFunctionParams):
    logprob: bool = Field(False, description="Return the log-probability (natural log) instead.")


class ContrastParams(StepFunctionParams):
    contrast_force_inputs: bool = Field(
        False,
        description="As the attributed function: score the contrastive side on the contrastive inputs (a "
        "constant for gradients) instead of the original inputs with the contrastive target token.",
    )


class ContrastProbParams(ContrastParams):
    logprob: bool = Field(False, description="Use log-probabilities (natural log) instead.")


class KLDivergenceParams(ContrastParams):
    top_k: int = Field(
        0,
        ge=0,
        le=MAX_TOKEN_INDEX,
        description="Keep only the k most likely tokens of each side; 0 keeps all.",
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Keep the nucleus of cumulative probability top_p (applied before top_k).",
    )
    min_tokens_to_keep: int = Field(
        1, ge=1, le=MAX_TOKEN_INDEX, description="Least tokens the top_p filter keeps."
    )


class MCDropoutParams(StepFunctionParams):
    n_mcd_steps: int = Field(
        5, ge=2, le=MAX_MC_DROPOUT_STEPS, description="Noisy forwards with dropout active (at least 2)."
    )
    logprob: bool = Field(False, description="Use log-probabilities (natural log) instead.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Seed of the dropout masks.")


class TopPSizeParams(StepFunctionParams):
    top_p: float = Field(gt=0, le=1, description="Cumulative probability of the nucleus (required).")


class StepFunctionSpec(BaseModel):
    """One entry of `GET /v1/step-functions`."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str
    attributable: bool = Field(True, description="Usable as `attributed_fn`.")
    contrastive: bool = Field(
        False, description="Compares with `contrast_targets` / `contrast_sources`, which it needs."
    )
    parameters: dict[str, Any] = Field(
        description="JSON schema of its arguments (`attributed_fn_args`, or `step_scores_args[id]`)."
    )
    span_aggregate: Aggregator = Field(
        Aggregator.ABSMAX,
        description="How a `spans`, `subwords` or `split` step combines the scores of merged steps when it "
        "is given no `aggregate_fn` (the reference's defaults: products of probabilities, sums of "
        "entropies).",
    )


_SPECS: list[tuple[StepFunctionSpec, type[StepFunctionParams]]] = []


def _register(params: type[StepFunctionParams], **facts: Any) -> None:
    if any(spec.id == facts["id"] for spec, _ in _SPECS):
        raise ValueError(f"step function {facts['id']!r} is already registered")
    _SPECS.append((StepFunctionSpec(parameters=params.model_json_schema(), **facts), params))


_register(NoParams, id="logit", description="Logit of the target token.")
_register(
    ProbabilityParams,
    id="probability",
    span_aggregate=Aggregator.PROD,
    description="Probability of the target token (softmax of the logits).",
)
_register(
    NoParams,
    id="entropy",
    span_aggregate=Aggregator.SUM,
    description="Entropy of the next-token distribution, in nats.",
)
_register(
    NoParams,
    id="crossentropy",
    span_aggregate=Aggregator.SUM,
    description="Cross entropy of the target token, in nats: -log p(target).",
)
_register(
    NoParams,
    id="perplexity",
    span_aggregate=Aggregator.PROD,
    description="exp(crossentropy): the perplexity of the target token. (The reference library computes "
    "2 ** crossentropy with crossentropy in nats; Seqattr uses the consistent base.)",
)
_register(
    ContrastParams,
    id="contrast_logits",
    description="Logit of the contrastive target token (or of the target given the contrastive source).",
    contrastive=True,
)
_register(
    ContrastProbParams,
    id="contrast_prob",
    span_aggregate=Aggregator.PROD,
    description="Probability of the contrastive target token (or of the target given the contrastive "
    "source).",
    contrastive=True,
)
_register(
    ContrastParams,
    id="contrast_logits_diff",
    description="Logit of the target minus that of its contrastive alternative (Yin and Neubig, 2022).",
    contrastive=True,
)
_register(
    ContrastProbParams,
    id="contrast_prob_diff",
    span_aggregate=Aggregator.PROD,
    description="Probability of the target minus that of its contrastive alternative (Yin and Neubig, 2022).",
    contrastive=True,
)
_register(
    ContrastParams,
    id="pcxmi",
    span_aggregate=Aggregator.SUM,
    description="Pointwise conditional cross-mutual information: -log2(p(target) / p_contrast(target)) "
    "(Yin et al., 2021).",
    contrastive=True,
)
_register(
    KLDivergenceParams,
    id="kl_divergence",
    span_aggregate=Aggregator.SUM,
    description="KL divergence of the contrastive next-token distribution from the original one, in nats; as "
    "the attributed function it needs contrast_force_inputs.",
    contrastive=True,
)
_register(
    ContrastParams,
    id="in_context_pvi",
    description="In-context pointwise V-usable information: -log p(target) + log p_contrast(target) "
    "(Lu et al., 2023).",
    contrastive=True,
)
_register(
    MCDropoutParams,
    id="mc_dropout_prob_avg",
    span_aggregate=Aggregator.PROD,
    description="Probability of the target z-scored against noisy probabilities with dropout active "
    "(Monte Carlo dropout); null where the model has no active dropout (the result's info says so).",
)
_register(
    TopPSizeParams,
    id="top_p_size",
    description="Number of tokens in the nucleus of cumulative probability top_p.",
    attributable=False,
)

STEP_FUNCTION_SPECS: dict[str, StepFunctionSpec] = {spec.id: spec for spec, _ in _SPECS}
"""Every step function the service offers, by id."""

STEP_FUNCTION_PARAMS: dict[str, type[StepFunctionParams]] = {spec.id: params for spec, params in _SPECS}
"""The argument model of each step function id."""
