"""The aggregator catalogue: reductions over the unit dimensions of raw scores (`aggregation.aggregators`).

Each id and its description are stated once, here; `GET /v1/aggregators` lists them and the workers
implement each one (a test checks both sides list the same ids).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Aggregator(StrEnum):
    """A reduction of one unit dimension (hidden size; heads, then layers for attention; layers for value
    zeroing)."""

    description: str

    def __new__(cls, value: str, description: str) -> Aggregator:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    VNORM = "vnorm", "L2 norm over the hidden size (the default for gradient methods)."
    SUM = "sum", "Sum over the hidden size."
    MEAN = "mean", "Mean over the hidden size (for attention: over heads, then layers; its default)."
    ABSMAX = "absmax", "The value of largest magnitude, sign kept."
    MAX = "max", "The largest value."
    MIN = "min", "The smallest value."
    PROD = "prod", "The product of the values."


class AggregatorSpec(BaseModel):
    """One entry of `GET /v1/aggregators`: a value for `aggregation.aggregators`."""

    model_config = ConfigDict(frozen=True)

    id: str
    description: str


AGGREGATOR_SPECS: dict[str, AggregatorSpec] = {
    member.value: AggregatorSpec(id=member.value, description=member.description) for member in Aggregator
}
"""Every aggregator the service offers, by id."""
