"""Aggregation chains on numpy scores: each step of `schemas.aggregation`, as the reference library runs it.

The span arithmetic follows the reference's `ContiguousSpanAggregator` and its subclasses, quirks included,
so that chains give the same numbers and positions as its `aggregate(...)`: spans over the target are made
relative to `attr_pos_start` for the step columns and the step scores, and `attr_pos_start` / `attr_pos_end`
move as merged prefix tokens shrink the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from schemas.aggregation import (
    AggregationStep,
    PairStep,
    ScoresStep,
    SlicesStep,
    SpansStep,
    SplitStep,
    SubwordsStep,
)
from schemas.aggregators import Aggregator
from schemas.errors import AggregationError, InvalidRequestError
from schemas.results import Token
from schemas.scores.functions import FUNCTIONS, normalize, rescale
from schemas.scores.sequence import SequenceScores
from schemas.scores.spans import merge_spans, split_spans, subword_spans
from schemas.step_functions import STEP_FUNCTION_SPECS
from schemas.units import unit_indices

Spans = list[tuple[int, int]]


@dataclass
class ChainContext:
    """What a chain needs besides the scores: the method's default aggregator per unit dimension (in reduction
    order), how to fetch another job's starting scores for `pair`, and where warnings go."""

    unit_defaults: list[Aggregator]
    paired: Callable[[str], list[SequenceScores]] | None = None
    warnings: list[str] = field(default_factory=list)


def run_chain(
    sequences: list[SequenceScores], steps: list[AggregationStep], context: ChainContext
) -> list[SequenceScores]:
    """Apply the steps in order to every sequence."""
    for index, step in enumerate(steps):
        try:
            if isinstance(step, PairStep):
                sequences = _pair(sequences, step, steps[:index], context)
            else:
                sequences = [_apply(seq, step, context) for seq in sequences]
        except AggregationError as exc:
            raise AggregationError(f"step {index} ({step.aggregator}): {exc.detail}") from None
    return sequences


def _apply(seq: SequenceScores, step: AggregationStep, context: ChainContext) -> SequenceScores:
    if isinstance(step, ScoresStep):
        return _scores(seq, step, context)
    if isinstance(step, SlicesStep):
        return _slices(seq, step)
    if isinstance(step, SpansStep):
        return _merge(seq, step.source_spans or [], step.target_spans or [], step.aggregate_fn)
    if isinstance(step, SubwordsStep):
        found = [
            subword_spans(tokens, tuple(step.special_chars), step.is_suffix_symbol) if wanted else []
            for tokens, wanted in ((seq.source, step.aggregate_source), (seq.target, step.aggregate_target))
        ]
        if not any(_has_symbol(t, step.special_chars) for t in (seq.source, seq.target)):
            context.warnings.append(
                f"subwords: no token contains {step.special_chars}; nothing was merged (GPT-2-style "
                "tokenizers mark words with 'Ġ' and 'Ċ'; WordPiece continues them with '##' and "
                "is_suffix_symbol)"
            )
        return _merge(seq, found[0], found[1], step.aggregate_fn)
    if isinstance(step, SplitStep):
        source = split_spans(seq.source, step.split_pattern, step.split_mode) if step.aggregate_source else []
        target = split_spans(seq.target, step.split_pattern, step.split_mode) if step.aggregate_target else []
        return _merge(seq, source, target, step.aggregate_fn)
    raise AssertionError(f"unhandled step {step!r}")


def _has_symbol(tokens: list[Token], symbols: list[str]) -> bool:
    return any(symbol in token["token"] for token in tokens for symbol in symbols)


# --- scores ---------------------------------------------------------------------------------------------


def _scores(seq: SequenceScores, step: ScoresStep, context: ChainContext) -> SequenceScores:
    left = seq.unit_ndim
    source, target = seq.source_scores, seq.target_scores
    if left == 0:
        if step.aggregate_fn is not None or step.select_idx is not None:
            raise AggregationError(
                "the scores have no unit dimension left to reduce: leave aggregate_fn and select_idx null to "
                "only normalise or rescale"
            )
    else:
        total = len(context.unit_defaults)
        fn = step.aggregate_fn or context.unit_defaults[max(total - left, 0)]
        reduce = _reducer(fn, step, (source if source is not None else target).shape[-1])  # type: ignore[union-attr]
        source = None if source is None else reduce(source)
        target = None if target is None else reduce(target)
    parts = [a for a in (source, target) if a is not None]
    do_normalize = step.normalize if step.normalize is not None else not step.rescale
    if do_normalize:
        parts = normalize(parts)
    elif step.rescale:
        parts = rescale(parts)
    scaled = iter(parts)
    return seq.replace(
        source_scores=None if source is None else next(scaled),
        target_scores=None if target is None else next(scaled),
    )


def _reducer(fn: Aggregator, step: ScoresStep, n_units: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        chosen = None if step.select_idx is None else unit_indices(step.select_idx, n_units, "units")
    except InvalidRequestError as exc:
        raise AggregationError(f"select_idx: {exc.detail}") from None
    if isinstance(step.select_idx, int):
        return lambda a: a[..., chosen[0]]  # type: ignore[index]  # one unit: kept, not aggregated
    reduce = FUNCTIONS[fn]
    if chosen is None:
        return lambda a: reduce(a, -1)
    return lambda a: reduce(a[..., chosen], -1)


# --- spans, subwords, split -----------------------------------------------------------------------------


def _check_spans(spans: Spans, length: int, side: str) -> None:
    for start, end in spans:
        if end > length:
            raise AggregationError(
                f"{side} span [{start}, {end}) is past the end of the {length} {side} tokens"
            )


def _relative(spans: Spans, start: int) -> Spans:
    """Target spans as step columns: spans of the unattributed prefix are dropped, the others shifted by
    `start` (one that straddles it starts at column 0), as the reference does."""
    if start == 0 or not spans:
        return spans
    return [(s - start if s > start else 0, e - start) for s, e in spans if e > start]


def _merge_tokens(tokens: list[Token], spans: Spans) -> list[Token]:
    starts = dict(spans)
    merged: list[Token] = []
    index = 0
    while index < len(tokens):
        end = starts.get(index)
        if end is None:
            merged.append(tokens[index])
            index += 1
            continue
        part = tokens[index:end]
        merged.append(
            {"id": -1, "token": "".join(t["token"] for t in part), "text": "".join(t["text"] for t in part)}
        )
        index = end
    return merged


def _span_fn(fn: Aggregator | None, default: Aggregator) -> Callable[[np.ndarray, int], np.ndarray]:
    return FUNCTIONS[fn or default]


def _merge(
    seq: SequenceScores, source_spans: Spans, target_spans: Spans, fn: Aggregator | None
) -> SequenceScores:
    _check_spans(source_spans, len(seq.source), "source")
    _check_spans(target_spans, len(seq.target), "target")
    columns = _relative(target_spans, seq.attr_pos_start)
    attributions = _span_fn(fn, Aggregator.ABSMAX)
    source = seq.source_scores
    if source is not None:
        source = merge_spans(merge_spans(source, columns, attributions, 1), source_spans, attributions, 0)
    target = seq.target_scores
    if target is not None:
        target = merge_spans(merge_spans(target, columns, attributions, 1), target_spans, attributions, 0)
    step_scores = {
        name: merge_spans(values, columns, _span_fn(fn, _step_default(name)), 0)
        for name, values in seq.step_scores.items()
    }
    start = _merged_start(seq.attr_pos_start, target_spans)
    end = start + seq.n_steps - sum(e - s - 1 for s, e in columns) if target_spans else seq.attr_pos_end
    new_target = _merge_tokens(seq.target, target_spans)
    return seq.replace(
        source=_merge_tokens(seq.source, source_spans),
        target=new_target,
        attr_pos_start=start,
        attr_pos_end=min(end, len(new_target)),
        source_scores=source,
        target_scores=target,
        step_scores=step_scores,
        contrast_positions=seq.contrast_positions if not columns else None,
    )


def _step_default(name: str) -> Aggregator:
    spec = STEP_FUNCTION_SPECS.get(name)
    return spec.span_aggregate if spec is not None else Aggregator.ABSMAX


def _merged_start(start: int, target_spans: Spans) -> int:
    """`attr_pos_start` after merging: shorter by the tokens merged away before it; a span that straddles it
    starts the attributed part (only the attributed part of its scores is merged)."""
    if not target_spans:
        return start
    new_start = start - sum(e - s - 1 for s, e in target_spans if e <= start)
    straddling = [(s, e) for s, e in target_spans if s < start < e]
    if straddling:
        new_start -= start - straddling[0][0]
    return new_start


# --- slices ---------------------------------------------------------------------------------------------


def _slices(seq: SequenceScores, step: SlicesStep) -> SequenceScores:
    source_spans = list(step.source_spans or [])
    target_spans = list(step.target_spans or [])
    if seq.source_scores is None:
        # Decoder-only: the source is the prompt, sliced by the target spans (as the reference does).
        if not target_spans:
            raise AggregationError("decoder-only models have no source scores: slice with target_spans")
        source_spans = [(s, min(e, seq.attr_pos_start)) for s, e in target_spans]
        source_spans = [(s, e) for s, e in source_spans if e > s]
    # The generated part is always kept, whole, so every step keeps its column.
    kept: Spans = []
    generated_added = False
    for start, end in target_spans:
        if end > seq.attr_pos_start:
            if not generated_added:  # a span reaching into the generated part keeps all of it
                kept.append((min(start, seq.attr_pos_start), seq.attr_pos_end))
                generated_added = True
            continue
        kept.append((start, end))
    if not generated_added:
        kept.append((seq.attr_pos_start, seq.attr_pos_end))
    _check_spans(source_spans, len(seq.source), "source")
    _check_spans(kept, len(seq.target), "target")
    new_target = [t for s, e in kept for t in seq.target[s:e]]
    return seq.replace(
        source=[t for s, e in source_spans for t in seq.source[s:e]] if source_spans else seq.source,
        target=new_target,
        attr_pos_start=sum(min(e, seq.attr_pos_start) - s for s, e in kept),
        attr_pos_end=min(seq.attr_pos_end, len(new_target)),
        source_scores=_rows(seq.source_scores, source_spans),
        target_scores=_rows(seq.target_scores, kept),
    )


def _rows(scores: np.ndarray | None, spans: Spans) -> np.ndarray | None:
    if scores is None or not spans:
        return scores
    return np.concatenate([scores[s:e] for s, e in spans], axis=0)


# --- pair -----------------------------------------------------------------------------------------------


def _pair(
    sequences: list[SequenceScores], step: PairStep, before: list[AggregationStep], context: ChainContext
) -> list[SequenceScores]:
    if context.paired is None:
        raise AggregationError("pair compares finished jobs: use POST /v1/jobs/{id}/aggregate")
    others = run_chain(context.paired(step.paired_job_id), before, context)
    if len(others) != len(sequences):
        raise AggregationError(
            f"job {step.paired_job_id!r} has {len(others)} sequences, this one {len(sequences)}"
        )
    return [_pair_one(seq, other, step.paired_job_id) for seq, other in zip(sequences, others, strict=True)]


def _pair_one(seq: SequenceScores, other: SequenceScores, other_id: str) -> SequenceScores:
    shapes = [
        ("source", len(seq.source), len(other.source)),
        ("target", len(seq.target), len(other.target)),
        ("source scores", _shape(seq.source_scores), _shape(other.source_scores)),
        ("target scores", _shape(seq.target_scores), _shape(other.target_scores)),
    ]
    for what, mine, theirs in shapes:
        if mine != theirs:
            raise AggregationError(f"job {other_id!r} has {what} of shape {theirs}, this job {mine}")
    missing = sorted(set(seq.step_scores) - set(other.step_scores))
    if missing:
        raise AggregationError(f"job {other_id!r} has no step scores {', '.join(missing)}")
    return seq.replace(
        source=_paired_tokens(seq.source, other.source),
        target=_paired_tokens(seq.target, other.target),
        source_scores=_difference(seq.source_scores, other.source_scores),
        target_scores=_difference(seq.target_scores, other.target_scores),
        step_scores={name: other.step_scores[name] - values for name, values in seq.step_scores.items()},
    )


def _shape(scores: np.ndarray | None) -> tuple[int, ...] | None:
    return None if scores is None else scores.shape


def _difference(mine: np.ndarray | None, theirs: np.ndarray | None) -> np.ndarray | None:
    return None if mine is None or theirs is None else theirs - mine


def _paired_tokens(tokens: list[Token], others: list[Token]) -> list[Token]:
    return [
        mine
        if mine["token"] == theirs["token"]
        else {
            "id": -1,
            "token": f"{mine['token']} → {theirs['token']}",
            "text": f"{mine['text']} → {theirs['text']}",
        }
        for mine, theirs in zip(tokens, others, strict=True)
    ]
