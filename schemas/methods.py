"""The method catalogue: ids, families, references and per-method parameters.

Each method's client-facing facts (family, description, reference, baselines, target attribution, parameters)
live here and nowhere else. The workers implement each id in `workers/methods/<family>.py` and list them in
`workers/methods/registry.py`; a test checks both sides list the same ids.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.defaults import MAX_IG_STEPS


class MethodArgs(BaseModel):
    """Base of every method's parameter model: unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(MethodArgs):
    """A method without parameters."""


class SaliencyArgs(MethodArgs):
    abs: bool = Field(True, description="Take the absolute value of the gradients (captum's default).")


class IntegratedGradientsArgs(MethodArgs):
    n_steps: int = Field(50, ge=1, le=MAX_IG_STEPS, description="Points on the path from baseline to input.")
    method: Literal[
        "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"
    ] = Field("gausslegendre", description="Quadrature rule used to approximate the path integral.")
    multiply_by_inputs: bool = Field(True, description="Multiply by (input - baseline): global attribution.")


class MethodSpec(BaseModel):
    """One entry of `GET /v1/methods`."""

    model_config = ConfigDict(frozen=True)

    id: str
    family: Literal["gradient", "internals", "perturbation", "layer"]
    description: str
    reference: str
    uses_baselines: bool = False
    supports_target_attribution: bool = True
    parameters: dict[str, Any] = Field(description="JSON schema of `method_args` for this method.")


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
    NoArgs,
    id="attention",
    family="internals",
    description="Attention weights of the attributed position, averaged over layers and heads by default.",
    reference="https://arxiv.org/abs/1409.0473",
)

METHOD_SPECS: dict[str, MethodSpec] = {spec.id: spec for spec, _ in _SPECS}
"""Every method the service offers, by id."""

METHOD_ARGS: dict[str, type[MethodArgs]] = {spec.id: args for spec, args in _SPECS}
"""The parameter model of each method id."""
