"""Step functions applied to one sequence: the attributed function bound to each chunk of steps, and the
step scores of every attributed step.

The contrastive side costs one extra forward per sequence, never one per step: causal masking makes the
logits at contrast position `j - 1` of one forward over the whole contrast sequence equal to those of a
forward over the prefix `contrast[:j]`, so one no-grad forward serves every step and every chunk.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from schemas.attribution import AttributionRequest, is_contrastive
from schemas.errors import InvalidRequestError
from schemas.step_functions import STEP_FUNCTION_PARAMS
from workers.engine.model_io import SequenceIO, dropout_active
from workers.engine.sequences import EncodedSequence
from workers.engine.step_functions import STEP_FUNCTION_REGISTRY, NoActiveDropoutError
from workers.types import ChunkForwards, ContrastView, ForwardAgain, ScoreFn, StepFunctionArgs


class SequenceScorer:
    """Step functions of one sequence, for its attributed positions.

    Args:
        io: the sequence and its model.
        seq: the encoded sequence (with its contrastive counterpart, if any).
        request: the attributed function, step scores and their arguments.
    """

    def __init__(self, io: SequenceIO, seq: EncodedSequence, request: AttributionRequest) -> None:
        self.io = io
        self.request = request
        self.positions = seq.positions
        self.targets = io.step_targets(self.positions)
        self.warnings: list[str] = []
        self._contrast_logits: torch.Tensor | None = None
        self._contrast_targets: torch.Tensor | None = None
        self._aligned: list[int] = []
        self._c_io: SequenceIO | None = None
        if seq.contrast is not None:
            contrast = seq.contrast
            c_seq = EncodedSequence(contrast.source_ids, contrast.target_ids, 0, len(contrast.target_ids))
            self._c_io = SequenceIO(io.loaded, c_seq)
            self._aligned = contrast.aligned
            self._contrast_targets = self._c_io.step_targets(contrast.aligned)
        fn_params = request.attributed_fn_args
        if (
            seq.contrast is not None
            and request.contrast_targets is None
            and is_contrastive(request.attributed_fn)
            and not fn_params.get("contrast_force_inputs", False)
        ):
            self.warnings.append(
                f"attributed_fn {request.attributed_fn!r} reads the contrastive target token from the "
                "original inputs (the reference's default); with contrast_sources alone that is the target "
                "itself: the attributions are 0; set contrast_force_inputs to attribute against the source"
            )
        # With a shared source (encoder-decoder, no contrast source), the contrastive forward reads the
        # attributed source too: as the attributed side, it is part of the gradient (as in the reference).
        self._shares_source = (
            io.is_encoder_decoder and seq.contrast is not None and request.contrast_sources is None
        )

    def _contrast_forward(self) -> torch.Tensor:
        """The contrastive logits of every step, from one forward over the contrast sequence, run on first use
        (a contrastive attributed function on the original inputs never needs it)."""
        if self._c_io is None:
            raise RuntimeError("no contrastive sequence to run")
        if self._contrast_logits is None:
            # no_grad rather than inference_mode: these logits may meet tensors that need gradients.
            with torch.no_grad():
                self._contrast_logits = self._c_io.forward(self._c_io.input_embeds(), self._aligned).logits
        return self._contrast_logits

    def _contrast_on_source(self, source: torch.Tensor, steps: slice) -> torch.Tensor:
        """Contrastive logits of the chunk's steps with `source` `[batch, length, hidden]` as encoder."""
        if self._c_io is None:
            raise RuntimeError("no contrastive sequence to run")
        target = self._c_io.input_embeds()[-1].expand(source.shape[0], -1, -1)
        return self._c_io.forward((source, target), self._aligned[steps]).logits

    def _args(
        self,
        params: Any,
        steps: slice,
        logits: torch.Tensor,
        forward_again: ForwardAgain | None,
        attributed: bool,
        contrast_forward: torch.Tensor | None = None,
    ) -> StepFunctionArgs:
        contrast = None
        if self._contrast_targets is not None:

            def forward_logits() -> torch.Tensor:
                return self._contrast_forward()[:, steps] if contrast_forward is None else contrast_forward

            # The reference's default for a contrastive attributed function: read the contrastive target token
            # from the original forward, so that gradients flow through both sides.
            read_original = attributed and not getattr(params, "contrast_force_inputs", False)
            contrast = ContrastView(
                logits=logits if read_original else forward_logits(),
                targets=self._contrast_targets[steps],
                forward=forward_logits,
            )
        return StepFunctionArgs(logits, self.targets[steps], params, contrast, forward_again)

    def attributed_fn(self, part: list[int]) -> ScoreFn:
        """The attributed function bound to a chunk of consecutive attributed positions."""
        fn_id = self.request.attributed_fn
        fn = STEP_FUNCTION_REGISTRY[fn_id]
        params = STEP_FUNCTION_PARAMS[fn_id].model_validate(self.request.attributed_fn_args)
        start = self.positions.index(part[0])
        steps = slice(start, start + len(part))

        in_graph = self._shares_source and getattr(params, "contrast_force_inputs", False)

        def score(logits: torch.Tensor, forwards: ChunkForwards) -> torch.Tensor:
            contrast_forward = None
            if in_graph:
                contrast_forward = forwards.track(self._contrast_on_source(forwards.embeds[0], steps))
            try:
                return fn(self._args(params, steps, logits, forwards.again, True, contrast_forward))
            except NoActiveDropoutError as exc:
                raise InvalidRequestError(f"attributed_fn {fn_id!r} is undefined here: {exc}") from None

        return score

    def step_scores(self) -> dict[str, list[float | None]]:
        """Every requested step score at every attributed position (one forward, plus the contrastive one)."""
        names = self.request.step_scores
        if not names:
            return {}
        embeds = self.io.input_embeds()
        with torch.inference_mode():
            logits = self.io.forward(embeds, self.positions).logits

            def forward_again() -> torch.Tensor:
                with dropout_active(self.io.model):
                    return self.io.forward(embeds, self.positions).logits

            return {name: self._step_score(name, logits, forward_again) for name in names}

    def _step_score(self, name: str, logits: torch.Tensor, forward_again: ForwardAgain) -> list[float | None]:
        params = STEP_FUNCTION_PARAMS[name].model_validate(self.request.step_scores_args.get(name, {}))
        args = self._args(params, slice(None), logits, forward_again, attributed=False)
        try:
            values = STEP_FUNCTION_REGISTRY[name](args)[0]
        except NoActiveDropoutError as exc:
            self.warnings.append(f"step score {name!r} is null: {exc}")
            return [None] * len(self.positions)
        scores = values.float()
        if not bool(torch.isfinite(scores).all()):
            self.warnings.append(f"step score {name!r} is null where it came out NaN or infinite")
        return [v if math.isfinite(v) else None for v in scores.tolist()]
