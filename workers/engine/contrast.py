"""Contrastive inputs: the other source or target a contrastive step function compares with, and which
contrast position each attributed step is compared with.

Conventions follow the reference library: contrast targets are tokenized exactly like targets (for
decoder-only models the full text, prompt included); without explicit alignments, the attributed steps are
aligned 1:1 with the contrast target from the end of both sequences; explicit pairs are kept one per step
(the first whose contrast position is still free) and the remaining steps are filled from the end. Step `p`
aligned with contrast position `j` compares `target[p]` given `target[:p]` with `contrast[j]` given
`contrast[:j]`. Unlike the reference, a pair that does not fit the tokens is refused, not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.attribution import AttributionRequest
from schemas.errors import InvalidRequestError
from workers.engine.text_encoder import TextEncoder


@dataclass(frozen=True)
class ContrastSequence:
    """The contrastive counterpart of one sequence."""

    source_ids: list[int]
    """The contrast source (encoder-decoder), or the original source."""
    target_ids: list[int]
    """The contrast target, or the original target when only a contrast source is given."""
    aligned: list[int]
    """For each attributed position, in order, the contrast target position it is compared with."""


def align(
    index: int,
    positions: list[int],
    n_target: int,
    n_contrast: int,
    pairs: list[tuple[int, int]] | None,
) -> list[int]:
    """The contrast position of each attributed position (the reference's `get_adjusted_alignments` with
    `fill_missing`, then one position per step).

    Raises:
        InvalidRequestError: a pair names a position outside the target or the contrast target, or contrast
            position 0 (nothing precedes it to predict it from).
    """
    if n_contrast < 2:
        raise InvalidRequestError(
            f"contrast_targets[{index}] has {n_contrast} token(s): a contrast target needs a token after its "
            "first to compare with (for decoder-only models, give the full text, prompt included)"
        )
    for k, (a, c) in enumerate(pairs or []):
        if a >= n_target or not 1 <= c < n_contrast:
            raise InvalidRequestError(
                f"contrast_targets_alignments[{index}][{k}] = ({a}, {c}) does not fit: the target has "
                f"{n_target} tokens and the contrast target {n_contrast} (contrast positions 1 to "
                f"{n_contrast - 1} can be compared, position 0 has nothing before it)",
                pair=[a, c],
            )
    candidates: dict[int, list[int]] = {}
    for a, c in sorted(set(pairs or [])):
        candidates.setdefault(a, []).append(c)
    chosen: dict[int, int] = {}
    for p in positions:
        options = candidates.get(p)
        if options:
            free = [c for c in options if c not in chosen.values()]
            chosen[p] = free[0] if free else options[0]
    end = positions[-1] + 1
    # Steps without a pair: 1:1 from the end of both sequences; past the start, the last contrast token.
    return [
        chosen.get(p, n_contrast - (end - p) if n_contrast - (end - p) > 0 else n_contrast - 1)
        for p in positions
    ]


def build_contrast(
    encoder: TextEncoder,
    index: int,
    request: AttributionRequest,
    source_ids: list[int],
    target_ids: list[int],
    positions: list[int],
) -> ContrastSequence | None:
    """The contrastive counterpart of sequence `index`, or None when the request has no contrastive input."""
    sources, targets = request.contrast_sources, request.contrast_targets
    if sources is None and targets is None:
        return None
    is_encoder_decoder = encoder.loaded.is_encoder_decoder
    if sources is not None and not is_encoder_decoder:
        raise InvalidRequestError(
            "contrast_sources are for encoder-decoder models; for a decoder-only model put the other context "
            "in contrast_targets (the full text, prompt included)"
        )
    c_source = source_ids if sources is None else encoder.source(encoder.clean(sources[index]))
    if targets is None:
        return ContrastSequence(c_source, target_ids, list(positions))
    text = encoder.clean(targets[index])
    c_target = encoder.target(text) if is_encoder_decoder else encoder.source(text)
    pairs = (
        None if request.contrast_targets_alignments is None else request.contrast_targets_alignments[index]
    )
    return ContrastSequence(
        c_source, c_target, align(index, positions, len(target_ids), len(c_target), pairs)
    )
