"""The engine's entry point: request + loaded model → `schemas.results.AttributionResult`.

The result is built as the typed dicts of `schemas/results.py` (mypy checks every key against them) and
handed back as plain data, ready for orjson.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import torch

from schemas.aggregators import Aggregator
from schemas.attribution import AttributionRequest
from schemas.defaults import DEFAULT_ATTRIBUTED_FN
from schemas.errors import CostLimitError, NonFiniteScoresError
from schemas.methods import METHOD_SPECS
from schemas.results import AttributionResult, Cell, SequenceAttribution, Token
from workers.engine.aggregation import aggregate
from workers.engine.model_io import SequenceIO
from workers.engine.scoring import SequenceScorer
from workers.engine.sequences import EncodedSequence, encode_sequences
from workers.methods.base import AttributionMethod
from workers.methods.registry import build_method
from workers.types import LoadedModel, ProgressFn, RawScores


def _versions() -> dict[str, str]:
    return {name: version(name) for name in ("seqattr", "torch", "transformers", "captum")}


def _matrix(t: torch.Tensor) -> list[list[Cell]]:
    """A `[rows, columns(, unit...)]` score tensor as JSON-ready rows: NaN → None (JSON null), and a granular
    cell that is all NaN becomes one null."""
    t = t.detach().cpu()
    if t.ndim > 2:
        undefined = t.isnan().flatten(2).all(dim=-1).tolist()
        return [
            [None if undefined[i][j] else _nan_to_none(cell) for j, cell in enumerate(row)]
            for i, row in enumerate(t.tolist())
        ]
    return _nan_to_none(t.tolist())


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if value != value else value


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


def _check_finite(
    index: int, source: torch.Tensor | None, target: torch.Tensor | None, positions: list[int]
) -> None:
    """NonFiniteScoresError when a defined score is NaN or infinite (target cells at or after their step are
    undefined, and NaN on purpose)."""
    bad = 0 if source is None else int((~torch.isfinite(source)).sum())
    if target is not None:
        rows = torch.arange(target.shape[0], device=target.device)[:, None]
        undefined = rows >= torch.tensor(positions, device=target.device)[None, :]
        undefined = undefined.reshape(*undefined.shape, *([1] * (target.ndim - 2)))
        bad += int((~(torch.isfinite(target) | undefined)).sum())
    if bad:
        raise NonFiniteScoresError(
            f"sequence {index}: {bad} scores came out NaN or infinite (a numeric overflow in the model or "
            "the attributed function); try float32 weights, another attributed function or another method"
        )


def _attribute_sequence(
    loaded: LoadedModel,
    index: int,
    seq: EncodedSequence,
    method: AttributionMethod,
    request: AttributionRequest,
    advance: Callable[[int], None],
    warnings: list[str],
) -> SequenceAttribution:
    io = SequenceIO(loaded, seq, include_eos_baseline=request.include_eos_baseline)
    scorer = SequenceScorer(io, seq, request)
    attribute_target = request.attribute_target and loaded.is_encoder_decoder
    reducers = _reducers(method, request)
    columns: list[RawScores] = []
    for part in method.plan(io, seq.positions):
        raw = method.attribute(io, part, scorer.attributed_fn(part), attribute_target)
        # Reductions and normalisation in float32 whatever the model's dtype (half-precision sums drift).
        raw = RawScores(
            source=None if raw.source is None else raw.source.float(),
            target=None if raw.target is None else raw.target.float(),
        )
        # Reduce each chunk as soon as it exists: the unreduced [length, steps, hidden] never piles up.
        columns.append(aggregate(raw, reducers, request.aggregation.normalize))
        advance(len(part))
    source_parts = [c.source for c in columns if c.source is not None]
    target_parts = [c.target for c in columns if c.target is not None]
    source = torch.cat(source_parts, dim=1) if source_parts else None
    target = torch.cat(target_parts, dim=1) if target_parts else None
    _check_finite(index, source, target, seq.positions)
    step_scores = scorer.step_scores()
    warnings.extend(scorer.warnings)
    clean = request.clean_special_chars
    contrast = seq.contrast
    return {
        "source": _tokens(loaded, seq.source_ids, clean),
        "target": _tokens(loaded, seq.target_ids, clean),
        "attr_pos_start": seq.attr_pos_start,
        "attr_pos_end": seq.attr_pos_end,
        "source_attributions": None if source is None else _matrix(source),
        "target_attributions": None if target is None else _matrix(target),
        "step_scores": step_scores,
        "sequence_scores": {},
        "contrast_source": None
        if contrast is None or request.contrast_sources is None
        else _tokens(loaded, contrast.source_ids, clean),
        "contrast_target": None
        if contrast is None or request.contrast_targets is None
        else _tokens(loaded, contrast.target_ids, clean),
        "contrast_positions": None if contrast is None else contrast.aligned,
    }


def job_cost(method: AttributionMethod, sequences: list[EncodedSequence]) -> int:
    """Token-steps (one token through one forward and backward), summed over inputs: the method's estimate
    for each sequence's attributed steps and length."""
    return sum(method.cost(len(s.positions), len(s.source_ids) + len(s.target_ids)) for s in sequences)


def run_attribution(
    request: AttributionRequest,
    loaded: LoadedModel,
    on_progress: ProgressFn,
    result_id: str,
    max_cost: int | None = None,
) -> AttributionResult:
    """Run one attribution request.

    Args:
        request: the validated request.
        loaded: its model.
        on_progress: called with (done, total) attributed steps over all inputs.
        result_id: the result's `id` (the job's).
        max_cost: refuse (CostLimitError, 422) a job costing more token-steps (`job_cost`).
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

    warnings: list[str] = []
    if not METHOD_SPECS[request.method].uses_attributed_fn and request.attributed_fn != DEFAULT_ATTRIBUTED_FN:
        warnings.append(
            f"method {request.method!r} does not use attributed_fn: {request.attributed_fn!r} only matters "
            "for the step scores"
        )
    results = [
        _attribute_sequence(loaded, index, seq, method, request, advance, warnings)
        for index, seq in enumerate(sequences)
    ]
    return {
        "id": result_id,
        "model": {
            "id": loaded.id,
            "architecture": loaded.architecture,
            "is_encoder_decoder": loaded.is_encoder_decoder,
        },
        "method": request.method,
        "attributed_fn": request.attributed_fn,
        "sequences": results,
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
            "warnings": list(dict.fromkeys(warnings)),
        },
    }
