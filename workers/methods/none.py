"""The `dummy` method: no attribution, only step scores (the reference library's `dummy`)."""

from __future__ import annotations

from workers.engine.model_io import SequenceIO
from workers.methods.base import AttributionMethod
from workers.types import RawScores, ScoreFn


class Dummy(AttributionMethod):
    """Computes nothing: source and target attributions are null; the step scores are still computed."""

    id = "dummy"

    def cost(self, n_steps: int, length: int) -> int:  # noqa: ARG002 - the step scores' forward
        return length

    def attribute(
        self,
        io: SequenceIO,  # noqa: ARG002
        positions: list[int],  # noqa: ARG002
        attributed_fn: ScoreFn,  # noqa: ARG002
        attribute_target: bool,  # noqa: ARG002
    ) -> RawScores:
        return RawScores(source=None, target=None)
