"""Methods reading the model's internals: attention weights."""

from __future__ import annotations

import torch

from schemas.aggregators import Aggregator
from schemas.methods import AttentionArgs
from schemas.units import unit_indices
from workers.engine.model_io import SequenceIO
from workers.methods.base import AttributionMethod, mask_after_step
from workers.types import RawScores, ScoreFn


def _rows(attentions: tuple[torch.Tensor, ...], rows: list[int]) -> torch.Tensor:
    """Per-layer `[1, heads, query, key]` → `[key, n_steps, layers, heads]` for the given query rows."""
    stacked = torch.stack([layer[0] for layer in attentions])  # [layers, heads, query, key]
    return stacked[:, :, rows, :].permute(3, 2, 0, 1).float()


class Attention(AttributionMethod):
    """Attention weights of the position that predicts each step (Bahdanau et al., 2015).

    Output-agnostic: `attributed_fn` does not change the scores. One forward gives every step. `heads` and
    `layers` keep some units before aggregation; one index keeps that unit alone and drops the dimension.
    """

    id = "attention"
    args: AttentionArgs

    def cost(self, n_steps: int, length: int) -> int:  # noqa: ARG002 - one forward
        return length

    def reducers(self, chosen: list[Aggregator] | None) -> list[Aggregator | None]:
        heads, layers = super().reducers(chosen)
        # A single index is kept, not aggregated: its dimension (of size 1) is dropped, and the scores are
        # normalised at that stage all the same, as the reference does.
        return [
            None if isinstance(self.args.heads, int) else heads,
            None if isinstance(self.args.layers, int) else layers,
        ]

    def _select(self, scores: torch.Tensor) -> torch.Tensor:
        """`[key, n_steps, layers, heads]` with the chosen units only."""
        if self.args.heads is not None:
            heads = unit_indices(self.args.heads, scores.shape[-1], "heads")
            scores = scores[..., heads]
        if self.args.layers is not None:
            layers = unit_indices(self.args.layers, scores.shape[2], "layers")
            scores = scores[:, :, layers]
        return scores

    def attribute(
        self,
        io: SequenceIO,
        positions: list[int],
        attributed_fn: ScoreFn,  # noqa: ARG002 - attention does not depend on the output
        attribute_target: bool,
    ) -> RawScores:
        with torch.inference_mode():
            out = io.forward(io.input_embeds(), positions, output_attentions=True)
        if out.decoder_attentions is None:
            raise RuntimeError(f"model {io.loaded.id!r} returned no attention weights")
        rows = out.head_rows
        target = None
        if not io.is_encoder_decoder or attribute_target:
            target = mask_after_step(self._select(_rows(out.decoder_attentions, rows)), positions)
        source = None
        if io.is_encoder_decoder:
            if out.cross_attentions is None:
                raise RuntimeError(f"model {io.loaded.id!r} returned no cross-attention weights")
            source = self._select(_rows(out.cross_attentions, rows))
        return RawScores(source=source, target=target)
