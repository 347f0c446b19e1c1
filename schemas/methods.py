"""The method catalogue: ids, families, references and per-method parameters.

Each method's client-facing facts (family, description, reference, baselines, target attribution, parameters)
live here and nowhere else. The workers implement each id in `workers/methods/<family>.py` and list them in
`workers/methods/registry.py`; a test checks both sides list the same ids.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.aggregators import Aggregator
from schemas.defaults import MAX_IG_STEPS, MAX_METHOD_SAMPLES, MAX_UNIT_INDEX


class MethodArgs(BaseModel):
    """Base of every method's parameter model: unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(MethodArgs):
    """A method without parameters."""


UnitIndex = Annotated[int, Field(ge=-MAX_UNIT_INDEX, lt=MAX_UNIT_INDEX)]
"""A layer or head index; negative counts from the end, as in Python."""


class IndexRange(MethodArgs):
    """Units `start` (included) to `end` (excluded), the reference library's `(start, end)` tuple."""

    start: UnitIndex
    end: UnitIndex

    @model_validator(mode="after")
    def _ordered(self) -> IndexRange:
        if self.start >= 0 and self.end >= 0 and self.end <= self.start:
            raise ValueError("end must be greater than start")
        return self


Indices = UnitIndex | IndexRange | Annotated[list[UnitIndex], Field(min_length=1, max_length=MAX_UNIT_INDEX)]
"""Which layers or heads: one index (that dimension is then dropped, not aggregated), a range
`{"start": s, "end": e}`, or a list of indices; null for all."""


class SaliencyArgs(MethodArgs):
    abs: bool = Field(True, description="Take the absolute value of the gradients (captum's default).")


Quadrature = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


class PathArgs(MethodArgs):
    """Points on an integration path and the quadrature rule over them."""

    n_steps: int = Field(50, ge=1, le=MAX_IG_STEPS, description="Points on the path from baseline to input.")
    method: Quadrature = Field(
        "gausslegendre", description="Quadrature rule used to approximate the path integral."
    )

    @model_validator(mode="after")
    def _enough_points(self) -> PathArgs:
        if self.method.startswith("riemann") and self.n_steps < 2:
            raise ValueError(f"method {self.method!r} needs n_steps of at least 2")
        return self


class IntegratedGradientsArgs(PathArgs):
    multiply_by_inputs: bool = Field(True, description="Multiply by (input - baseline): global attribution.")


class MultiplyArgs(MethodArgs):
    multiply_by_inputs: bool = Field(True, description="Multiply by (input - baseline): global attribution.")


class GradientShapArgs(MethodArgs):
    n_samples: int = Field(5, ge=1, le=MAX_METHOD_SAMPLES, description="Random points per step.")
    stdevs: float = Field(
        0.0, ge=0.0, le=1e3, description="Standard deviation of the Gaussian noise added to the inputs."
    )
    seed: int | None = Field(
        None, ge=0, lt=2**63, description="Random seed; the same seed gives the same scores."
    )
    multiply_by_inputs: bool = Field(True, description="Multiply by (input - baseline): global attribution.")


class DiscretizedIntegratedGradientsArgs(MethodArgs):
    n_steps: int = Field(50, ge=2, le=MAX_IG_STEPS, description="Interpolation points between anchors.")
    strategy: Literal["greedy", "maxcount"] = Field(
        "greedy", description="How the next anchor word is chosen among the embedding neighbours."
    )
    n_neighbors: int = Field(
        50, ge=1, le=1000, description="Neighbours per vocabulary embedding searched for anchors."
    )
    multiply_by_inputs: bool = Field(
        False, description="Multiply by (input - baseline) (the reference's default: no)."
    )


class SequentialIntegratedGradientsArgs(PathArgs):
    """`n_steps` points on each token's own path (the other tokens stay at their embeddings)."""

    multiply_by_inputs: bool = Field(True, description="Multiply by (input - baseline): global attribution.")


class LayerArgs(MethodArgs):
    target_layer: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="Module name in the model (as `model.named_modules()` lists it); null: the embedding "
        "layer.",
    )
    multiply_by_inputs: bool = Field(
        True, description="Multiply by the activation (or activation - baseline)."
    )


class LayerIntegratedGradientsArgs(LayerArgs, PathArgs):
    """Integrated gradients at a layer's output."""


class AttentionArgs(MethodArgs):
    heads: Indices | None = Field(None, description="Attention heads kept before aggregation; null for all.")
    layers: Indices | None = Field(None, description="Layers kept before aggregation; null for all.")


class OcclusionArgs(MethodArgs):
    sliding_window: int = Field(
        1, ge=1, le=512, description="Tokens occluded together (replaced by the baseline)."
    )
    stride: int = Field(1, ge=1, le=512, description="Tokens the window moves at each step.")

    @model_validator(mode="after")
    def _covering(self) -> OcclusionArgs:
        if self.stride > self.sliding_window:
            raise ValueError(
                "stride must not exceed sliding_window: tokens between windows would get no score"
            )
        return self


class LimeArgs(MethodArgs):
    n_samples: int = Field(50, ge=1, le=MAX_METHOD_SAMPLES, description="Perturbed copies per step.")
    mask_prob: float = Field(
        0.3, gt=0.0, lt=1.0, description="Probability that a token is replaced in a copy."
    )
    seed: int | None = Field(
        None, ge=0, lt=2**63, description="Random seed; the same seed gives the same scores."
    )


LayerKey = Annotated[str, Field(pattern=r"^-?[0-9]{1,4}$")]
"""A layer index as a JSON object key (negative counts from the end)."""

ZeroedUnits = Indices | dict[LayerKey, Indices]
"""Heads zeroed in every layer (one index, a range or a list), or per layer: `{"<layer>": heads}`."""


class ValueZeroingArgs(MethodArgs):
    """The reference's `encoder_zeroed_units_indices` and `output_{encoder,decoder}_self_scores` only fill its
    per-sequence `sequence_scores` (encoder self-mixing), which Seqattr does not compute: they are refused
    rather than ignored."""

    similarity_metric: Literal["cosine", "euclidean"] = Field(
        "cosine", description="Distance between hidden states with and without the zeroing."
    )
    decoder_zeroed_units_indices: ZeroedUnits | None = Field(
        None, description="Decoder self-attention heads zeroed; null: all."
    )
    cross_zeroed_units_indices: ZeroedUnits | None = Field(
        None, description="Cross-attention heads zeroed; null: all."
    )


class ReagentArgs(MethodArgs):
    keep_top_n: int = Field(
        5,
        ge=0,
        le=MAX_METHOD_SAMPLES,
        description="Tokens kept by importance while probing; 0: use keep_ratio.",
    )
    keep_ratio: float | None = Field(
        None, gt=0.0, le=1.0, description="Share of tokens kept when keep_top_n is 0."
    )
    invert_keep: bool = Field(False, description="Replace the top tokens instead of keeping them.")
    stopping_condition_top_k: int = Field(
        3, ge=1, le=1000, description="Stop when the target is in the top k predictions."
    )
    replacing_ratio: float = Field(0.3, gt=0.0, le=1.0, description="Share of tokens replaced in each probe.")
    max_probe_steps: int = Field(3000, ge=1, le=100_000, description="Most probing rounds per step.")
    num_probes: int = Field(
        16, ge=1, le=MAX_METHOD_SAMPLES, description="Probes run together (one batched forward)."
    )
    replacing_model: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Registry model id proposing replacements; null: the job's model.",
    )
    seed: int | None = Field(
        None, ge=0, lt=2**63, description="Random seed; the same seed gives the same scores."
    )

    @model_validator(mode="after")
    def _keep(self) -> ReagentArgs:
        if self.keep_top_n == 0 and self.keep_ratio is None:
            raise ValueError("keep_top_n 0 needs keep_ratio")
        return self


class MethodSpec(BaseModel):
    """One entry of `GET /v1/methods`."""

    model_config = ConfigDict(frozen=True)

    id: str
    family: Literal["gradient", "layer", "internals", "perturbation", "none"]
    description: str
    reference: str
    uses_baselines: bool = False
    supports_target_attribution: bool = True
    randomised: bool = Field(False, description="Takes a `seed`; the same seed gives the same scores.")
    uses_attributed_fn: bool = Field(
        True,
        description="Whether `attributed_fn` changes the scores (attention weights and value zeroing read "
        "the model's internals; ReAGent always scores the target's probability).",
    )
    unit_dims: list[str] = Field(
        ["hidden"],
        description="The unit dimensions of each (position, step) score before aggregation, in the order "
        "they are reduced (`aggregation.aggregators` gives one aggregator, or one per dimension in this "
        "order).",
    )
    default_aggregators: list[Aggregator] = Field(
        [Aggregator.VNORM],
        description="The reference's default aggregator for each unit dimension, in `unit_dims` order.",
    )
    parameters: dict[str, Any] = Field(description="JSON schema of `method_args` for this method.")

    @model_validator(mode="after")
    def _one_default_per_dimension(self) -> MethodSpec:
        if len(self.default_aggregators) != len(self.unit_dims):
            raise ValueError(f"method {self.id!r}: one default aggregator per unit dimension")
        return self


_SPECS: list[tuple[MethodSpec, type[MethodArgs]]] = []


def _register(args: type[MethodArgs], **facts: Any) -> None:
    if any(spec.id == facts["id"] for spec, _ in _SPECS):
        raise ValueError(f"method {facts['id']!r} is already registered")
    _SPECS.append((MethodSpec(parameters=args.model_json_schema(), **facts), args))


_register(
    SaliencyArgs,
    id="saliency",
    family="gradient",
    description="Gradient of the attributed function with respect to the input embeddings.",
    reference="https://captum.ai/api/saliency.html",
)
_register(
    NoArgs,
    id="input_x_gradient",
    family="gradient",
    description="Input embeddings multiplied by their gradient.",
    reference="https://captum.ai/api/input_x_gradient.html",
)
_register(
    IntegratedGradientsArgs,
    id="integrated_gradients",
    family="gradient",
    description="Gradients integrated along the path from a baseline (UNK embeddings) to the input.",
    reference="https://captum.ai/api/integrated_gradients.html",
    uses_baselines=True,
)
_register(
    MultiplyArgs,
    id="deeplift",
    family="gradient",
    description="DeepLIFT (rescale rule): differences from the baseline propagated through the model's "
    "nonlinear modules.",
    reference="https://captum.ai/api/deep_lift.html",
    uses_baselines=True,
)
_register(
    GradientShapArgs,
    id="gradient_shap",
    family="gradient",
    description="Expected gradients at random points between the baseline and (noisy) inputs, times the "
    "input difference: SHAP values approximated by sampling.",
    reference="https://captum.ai/api/gradient_shap.html",
    uses_baselines=True,
    randomised=True,
)
_register(
    DiscretizedIntegratedGradientsArgs,
    id="discretized_integrated_gradients",
    family="gradient",
    description="Integrated gradients along a monotonic path through real word embeddings (neighbours in the "
    "model's own embedding matrix) instead of a straight line.",
    reference="https://arxiv.org/abs/2108.13654",
    uses_baselines=True,
)
_register(
    SequentialIntegratedGradientsArgs,
    id="sequential_integrated_gradients",
    family="gradient",
    description="Integrated gradients for one token at a time, the other tokens kept at their embeddings.",
    reference="https://aclanthology.org/2023.findings-acl.477/",
    uses_baselines=True,
)
_register(
    LayerIntegratedGradientsArgs,
    id="layer_integrated_gradients",
    family="layer",
    description="Integrated gradients with respect to the output of a layer (default: the embedding layer).",
    reference="https://captum.ai/api/layer.html#layer-integrated-gradients",
    uses_baselines=True,
)
_register(
    LayerArgs,
    id="layer_gradient_x_activation",
    family="layer",
    description="A layer's output multiplied by its gradient (default: the embedding layer).",
    reference="https://captum.ai/api/layer.html#layer-gradient-x-activation",
)
_register(
    LayerArgs,
    id="layer_deeplift",
    family="layer",
    description="DeepLIFT with respect to the output of a layer (default: the embedding layer).",
    reference="https://captum.ai/api/layer.html#layer-deeplift",
    uses_baselines=True,
)
_register(
    AttentionArgs,
    id="attention",
    uses_attributed_fn=False,
    family="internals",
    description="Attention weights of the attributed position, averaged over layers and heads by default.",
    reference="https://arxiv.org/abs/1409.0473",
    unit_dims=["heads", "layers"],
    default_aggregators=[Aggregator.MEAN, Aggregator.MEAN],
)
_register(
    OcclusionArgs,
    id="occlusion",
    family="perturbation",
    description="Change of the attributed function when a window of tokens is replaced by the baseline; one "
    "score per token.",
    reference="https://captum.ai/api/occlusion.html",
    uses_baselines=True,
    unit_dims=[],
    default_aggregators=[],
)
_register(
    LimeArgs,
    id="lime",
    family="perturbation",
    description="A local linear surrogate fitted on copies with random tokens replaced.",
    reference="https://captum.ai/api/lime.html",
    randomised=True,
)
_register(
    ValueZeroingArgs,
    id="value_zeroing",
    uses_attributed_fn=False,
    family="perturbation",
    description="How much each token's value vectors matter: the change of every layer's output when they "
    "are zeroed in attention, one score per layer.",
    reference="https://aclanthology.org/2023.eacl-main.245/",
    unit_dims=["layers"],
    default_aggregators=[Aggregator.MEAN],
)
_register(
    ReagentArgs,
    id="reagent",
    uses_attributed_fn=False,
    family="perturbation",
    description="ReAGent: the drop in the target's probability when tokens are replaced by a language "
    "model's plausible alternatives, accumulated over random probes.",
    reference="https://arxiv.org/abs/2402.00794",
    randomised=True,
    unit_dims=[],
    default_aggregators=[],
)
_register(
    NoArgs,
    id="dummy",
    uses_attributed_fn=False,
    family="none",
    description="No attribution: only the step scores (source and target attributions are null).",
    reference="https://inseq.org/en/latest/main_classes/feature_attribution.html",
    unit_dims=[],
    default_aggregators=[],
)

METHOD_SPECS: dict[str, MethodSpec] = {spec.id: spec for spec, _ in _SPECS}
"""Every method the service offers, by id."""

METHOD_ARGS: dict[str, type[MethodArgs]] = {spec.id: args for spec, args in _SPECS}
"""The parameter model of each method id."""
