"""The step-function catalogue: scores computed at every generation step, some of them attributable.

The workers implement each id in `workers/engine/step_functions.py`; a test checks both sides list the same
ids.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StepFunctionSpec(BaseModel):
    """One entry of `GET /v1/step-functions`."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str
    attributable: bool = True


STEP_FUNCTION_SPECS: dict[str, StepFunctionSpec] = {
    spec.id: spec
    for spec in (
        StepFunctionSpec(
            id="probability", description="Probability of the target token (softmax of the logits)."
        ),
        StepFunctionSpec(id="entropy", description="Entropy of the next-token distribution, in nats."),
    )
}
"""Every step function the service offers, by id."""
