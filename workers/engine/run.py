"""The attribution job: request + loaded model → the Result dict of API.md."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import torch

import workers.methods  # noqa: F401 - registers the methods
from schemas.attribution import AttributionRequest
from workers.engine.aggregation import aggregate
from workers.engine.model_io import SequenceIO
from workers.engine.sequences import EncodedSequence, encode_sequences
from workers.engine.step_functions import STEP_FUNCTIONS
from workers.methods.base import AttributionMethod, RawScores, build_method
from workers.model_cache import LoadedModel

ProgressFn = Callable[[int, int], None]


def _versions() -> dict[str, str]:
    return {name: version(name) for name in ("seqattr", "torch", "transformers", "captum")}


def _cells(t: torch.Tensor | None) -> list[Any] | None:
    """Tensor → nested lists, NaN → None (JSON null); a granular cell that is all NaN becomes one null."""
    if t is None:
        return None
    t = t.detach().cpu()
    if t.ndim > 2:
        undefined = t.isnan().flatten(2).all(dim=-1)
        rows = t.tolist()
        return [
            [None if undefined[i, j] else _nan_to_none(cell) for j, cell in enumerate(row)]
            for i, row in enumerate(rows)
        ]
    return _nan_to_none(t.tolist())


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if value != value else value


def _reducers(method: AttributionMethod, request: AttributionRequest) -> list[str]:
    if request.aggregation.granular:
        return []
    chosen = request.aggregation.aggregators
    if not chosen:
        return list(method.default_reducers)
    # One aggregator given: it reduces every unit dimension (hidden, or heads then layers).
    return [chosen[0]] * len(method.default_reducers)


def _step_scores(io: SequenceIO, positions: list[int], names: list[str]) -> dict[str, list[float | None]]:
    if not names:
        return {}
    with torch.inference_mode():
        logits = io.forward(io.input_embeds(), positions).logits
        targets = io.step_targets(positions)
        return {name: _cells(STEP_FUNCTIONS[name](logits, targets)[0]) for name in names}


def _tokens(loaded: LoadedModel, ids: list[int]) -> list[dict[str, Any]]:
    """Vocabulary tokens as the reference library shows them (`Ġto`), plus their decoded text (` to`)."""
    tok = loaded.tokenizer
    tokens = tok.convert_ids_to_tokens(ids)
    return [
        {"id": i, "token": t, "text": tok.decode([i], clean_up_tokenization_spaces=False)}
        for i, t in zip(ids, tokens, strict=True)
    ]


def _attribute_sequence(
    loaded: LoadedModel,
    seq: EncodedSequence,
    method: AttributionMethod,
    request: AttributionRequest,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    io = SequenceIO(loaded, seq, include_eos_baseline=request.include_eos_baseline)
    positions = seq.positions
    attributed_fn = STEP_FUNCTIONS[request.attributed_fn]
    attribute_target = request.attribute_target and loaded.is_encoder_decoder
    reducers = _reducers(method, request)
    columns: list[RawScores] = []
    for part in method.plan(io, positions):
        raw = method.attribute(io, part, attributed_fn, attribute_target)
        # Reduce each chunk as soon as it exists: the unreduced [length, steps, hidden] never piles up.
        columns.append(aggregate(raw, reducers, request.aggregation.normalize))
        advance(len(part))
    source = [c.source for c in columns if c.source is not None]
    target = [c.target for c in columns if c.target is not None]
    return {
        "source": _tokens(loaded, seq.source_ids),
        "target": _tokens(loaded, seq.target_ids),
        "attr_pos_start": seq.attr_pos_start,
        "attr_pos_end": seq.attr_pos_end,
        "source_attributions": _cells(torch.cat(source, dim=1)) if source else None,
        "target_attributions": _cells(torch.cat(target, dim=1)) if target else None,
        "step_scores": _step_scores(io, positions, request.step_scores),
        "sequence_scores": {},
    }


def run_attribution(
    request: AttributionRequest, loaded: LoadedModel, on_progress: ProgressFn
) -> dict[str, Any]:
    """Run one attribution request; `on_progress(done, total)` counts attributed steps over all inputs."""
    started = time.perf_counter()
    method = build_method(request.method, request.method_args)
    sequences = encode_sequences(loaded, request)
    total = sum(len(s.positions) for s in sequences)
    done = 0
    on_progress(0, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        on_progress(done, total)

    results = [_attribute_sequence(loaded, seq, method, request, advance) for seq in sequences]
    return {
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
            "aggregation": request.aggregation.model_dump(),
            "attribute_target": request.attribute_target,
            "include_eos_baseline": request.include_eos_baseline,
            "forced_targets": request.generated_texts is not None,
            "versions": _versions(),
        },
    }
