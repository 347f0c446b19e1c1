"""The engine's entry point: request + loaded model → `schemas.results.AttributionResult`.

The result is built as the typed dicts of `schemas/results.py` (mypy checks every key against them) and
handed back as plain data, ready for orjson.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, cast

import numpy as np
import torch

from schemas.aggregation import AggregationStep, ScoresStep
from schemas.aggregators import Aggregator
from schemas.attribution import AttributionRequest
from schemas.defaults import DEFAULT_ATTRIBUTED_FN, DEFAULT_MAX_GRANULAR_BYTES
from schemas.errors import CostLimitError, NonFiniteScoresError
from schemas.methods import METHOD_SPECS
from schemas.results import AttributionResult, SequenceAttribution, Token
from schemas.scores import archive
from schemas.scores.sequence import SequenceScores, to_result_sequence
from schemas.scores.steps import ChainContext, run_chain
from workers.engine.aggregation import aggregate
from workers.engine.model_io import SequenceIO
from workers.engine.scoring import SequenceScorer
from workers.engine.sequences import EncodedSequence, encode_sequences
from workers.methods.base import AttributionMethod
from workers.methods.registry import build_method
from workers.types import LoadedModel, ProgressFn, RawScores


def _versions() -> dict[str, str]:
    return {name: version(name) for name in ("seqattr", "torch", "transformers", "captum")}


def _reducers(method: AttributionMethod, request: AttributionRequest) -> list[Aggregator | None]:
    if request.aggregation.granular:
        return []
    return method.reducers(request.aggregation.aggregators)


def _tokens(loaded: LoadedModel, ids: list[int], clean_special_chars: bool = False) -> list[Token]:
    """Vocabulary tokens as the reference library shows them (`Ġto`; with `clean_special_chars`, as text,
    ` to`), plus their decoded text (` to`)."""
    tok = loaded.tokenizer
    tokens = tok.convert_ids_to_tokens(ids)
    if clean_special_chars:
        tokens = [tok.convert_tokens_to_string([t]) or t for t in tokens]
    return [
        {"id": i, "token": t, "text": tok.decode([i], clean_up_tokenization_spaces=False)}
        for i, t in zip(ids, tokens, strict=True)
    ]


def _check_finite(index: int, seq: SequenceScores, positions: list[int]) -> None:
    """NonFiniteScoresError when a defined score is NaN or infinite (target cells at or after their step are
    undefined, and NaN on purpose)."""
    bad = 0 if seq.source_scores is None else int((~np.isfinite(seq.source_scores)).sum())
    target = seq.target_scores
    if target is not None:
        undefined = np.arange(target.shape[0])[:, None] >= np.array(positions)[None, :]
        undefined = undefined.reshape(*undefined.shape, *([1] * (target.ndim - 2)))
        bad += int((~(np.isfinite(target) | undefined)).sum())
    if bad:
        raise NonFiniteScoresError(
            f"sequence {index}: {bad} scores came out NaN or infinite (a numeric overflow in the model or "
            "the attributed function); try float32 weights, another attributed function or another method"
        )


@dataclass
class _Attributed:
    """One sequence's result, and the scores kept for re-aggregation."""

    result: SequenceAttribution
    base: SequenceScores
    raw: SequenceScores | None


def _joined(parts: list[torch.Tensor | None]) -> np.ndarray | None:
    kept = [p for p in parts if p is not None]
    return torch.cat(kept, dim=1).detach().cpu().numpy() if kept else None


def _attribute_sequence(
    loaded: LoadedModel,
    index: int,
    seq: EncodedSequence,
    method: AttributionMethod,
    request: AttributionRequest,
    advance: Callable[[int], None],
    context: ChainContext,
) -> _Attributed:
    io = SequenceIO(loaded, seq, include_eos_baseline=request.include_eos_baseline)
    scorer = SequenceScorer(io, seq, request)
    attribute_target = request.attribute_target and loaded.is_encoder_decoder
    options = request.aggregation
    reducers = _reducers(method, request)
    # Rescaling divides by the sequence's largest score, which no chunk knows alone: such requests keep the
    # unreduced chunks and reduce them at the end, as they do when the unreduced scores are to be kept.
    late = options.rescale and bool(reducers)
    keep_raw = bool(reducers) and (options.keep_granular or late)
    columns: list[RawScores] = []
    raw_parts: list[RawScores] = []
    for part in method.plan(io, seq.positions):
        raw = method.attribute(io, part, scorer.attributed_fn(part), attribute_target)
        # Reductions and normalisation in float32 whatever the model's dtype (half-precision sums drift).
        raw = RawScores(
            source=None if raw.source is None else raw.source.float(),
            target=None if raw.target is None else raw.target.float(),
        )
        if keep_raw:
            raw_parts.append(raw)
        if not late:
            # Reduce each chunk as soon as it exists: the unreduced [length, steps, hidden] never piles up.
            columns.append(aggregate(raw, reducers, options.normalize))
        advance(len(part))
    clean = request.clean_special_chars
    contrast = seq.contrast
    step_scores = scorer.step_scores()
    context.warnings.extend(scorer.warnings)
    frame = SequenceScores(
        source=_tokens(loaded, seq.source_ids, clean),
        target=_tokens(loaded, seq.target_ids, clean),
        attr_pos_start=seq.attr_pos_start,
        attr_pos_end=seq.attr_pos_end,
        source_scores=None,
        target_scores=None,
        step_scores={
            name: np.array([np.nan if v is None else v for v in values], dtype=np.float32)
            for name, values in step_scores.items()
        },
        contrast_source=None
        if contrast is None or request.contrast_sources is None
        else _tokens(loaded, contrast.source_ids, clean),
        contrast_target=None
        if contrast is None or request.contrast_targets is None
        else _tokens(loaded, contrast.target_ids, clean),
        contrast_positions=None if contrast is None else contrast.aligned,
    )
    raw_scores = None
    if raw_parts:
        raw_scores = frame.replace(
            source_scores=_joined([r.source for r in raw_parts]),
            target_scores=_joined([r.target for r in raw_parts]),
        )
    if late:
        assert raw_scores is not None
        base = run_chain([raw_scores], _late_steps(reducers, options.normalize, options.rescale), context)[0]
    else:
        base = frame.replace(
            source_scores=_joined([c.source for c in columns]),
            target_scores=_joined([c.target for c in columns]),
        )
    _check_finite(index, base, seq.positions)
    final = run_chain([base], list(options.steps), context)[0]
    return _Attributed(to_result_sequence(final), base, raw_scores)


def _late_steps(reducers: list[Aggregator | None], normalize: bool, rescale: bool) -> list[AggregationStep]:
    """The chunk reductions as `scores` steps (a dropped single unit is unit 0 of its dimension)."""
    return [
        ScoresStep(
            aggregator="scores",
            aggregate_fn=reducer,
            select_idx=0 if reducer is None else None,
            normalize=normalize,
            rescale=rescale,
        )
        for reducer in reducers
    ]


def job_cost(method: AttributionMethod, sequences: list[EncodedSequence]) -> int:
    """Token-steps (one token through one forward and backward), summed over inputs: the method's estimate
    for each sequence's attributed steps and length."""
    return sum(method.cost(len(s.positions), len(s.source_ids) + len(s.target_ids)) for s in sequences)


@dataclass
class Attribution:
    """A job's result, and the archive of scores kept beside it (`schemas.scores.archive`)."""

    result: AttributionResult
    archive: bytes


def run_attribution(
    request: AttributionRequest,
    loaded: LoadedModel,
    on_progress: ProgressFn,
    result_id: str,
    max_cost: int | None = None,
) -> AttributionResult:
    """Run one attribution request and return its result (`attribute` also gives the kept scores)."""
    return attribute(request, loaded, on_progress, result_id, max_cost).result


def attribute(
    request: AttributionRequest,
    loaded: LoadedModel,
    on_progress: ProgressFn,
    result_id: str,
    max_cost: int | None = None,
    max_granular_bytes: int = DEFAULT_MAX_GRANULAR_BYTES,
) -> Attribution:
    """Run one attribution request.

    Args:
        request: the validated request.
        loaded: its model.
        on_progress: called with (done, total) attributed steps over all inputs.
        result_id: the result's `id` (the job's).
        max_cost: refuse (CostLimitError, 422) a job costing more token-steps (`job_cost`).
        max_granular_bytes: keep unreduced scores (`aggregation.keep_granular`) only up to this size.
    """
    started = time.perf_counter()
    method = build_method(request.method, request.method_args)
    sequences = encode_sequences(loaded, request)
    if max_cost is not None and (cost := job_cost(method, sequences)) > max_cost:
        raise CostLimitError(cost, max_cost)
    total = sum(len(s.positions) for s in sequences)
    done = 0
    on_progress(0, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        on_progress(done, total)

    context = ChainContext(unit_defaults=METHOD_SPECS[request.method].default_aggregators)
    if not METHOD_SPECS[request.method].uses_attributed_fn and request.attributed_fn != DEFAULT_ATTRIBUTED_FN:
        context.warnings.append(
            f"method {request.method!r} does not use attributed_fn: {request.attributed_fn!r} only matters "
            "for the step scores"
        )
    attributed = [
        _attribute_sequence(loaded, index, seq, method, request, advance, context)
        for index, seq in enumerate(sequences)
    ]
    raw, raw_status = _kept_raw(request, method, attributed, max_granular_bytes, context.warnings)
    header: dict[str, Any] = {
        "id": result_id,
        "model": {
            "id": loaded.id,
            "architecture": loaded.architecture,
            "is_encoder_decoder": loaded.is_encoder_decoder,
        },
        "method": request.method,
        "attributed_fn": request.attributed_fn,
        "info": {
            "exec_time_s": round(time.perf_counter() - started, 4),
            "generation_args": request.generation_args.model_dump(exclude_none=True),
            "method_args": request.method_args,
            "attributed_fn_args": request.attributed_fn_args,
            "step_scores_args": request.step_scores_args,
            "aggregation": request.aggregation.model_dump(),
            "attribute_target": request.attribute_target,
            "include_eos_baseline": request.include_eos_baseline,
            "forced_targets": request.generated_texts is not None,
            "versions": _versions(),
            "warnings": list(dict.fromkeys(context.warnings)),
        },
    }
    result = cast(AttributionResult, {**header, "sequences": [a.result for a in attributed]})
    base = [a.base for a in attributed]
    precision = request.aggregation.granular_precision
    return Attribution(result, archive.pack(header, base, raw, raw_status, precision))


def _kept_raw(
    request: AttributionRequest,
    method: AttributionMethod,
    attributed: list[_Attributed],
    max_bytes: int,
    warnings: list[str],
) -> tuple[list[SequenceScores] | None, archive.RawStatus]:
    """The unreduced scores to keep, and why there are none when there are none."""
    if not _reducers(method, request):
        return None, "base"  # nothing was reduced: the base scores are the unreduced ones
    if not request.aggregation.keep_granular:
        return None, "not_requested"
    raw = [a.raw for a in attributed if a.raw is not None]
    size = archive.raw_nbytes(raw, request.aggregation.granular_precision)
    if size > max_bytes:
        warnings.append(
            f"the unreduced scores ({size} bytes) are over the worker's SEQATTR_MAX_GRANULAR_BYTES "
            f"({max_bytes}) and were not kept: re-aggregations that start with a scores step are unavailable"
        )
        return None, "over_budget"
    return raw, "kept"
