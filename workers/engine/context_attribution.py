"""PECoRe context attribution with the engine: the reference's `attribute_context_with_model`.

Part 1 (CTI) scores every generated token with a contrastive step function, comparing the prediction with
the full input and without the context, in one engine run with the `dummy` method. Part 2 (CCI) attributes
each selected token to the context with a contrastive attributed function: the contextual output up to the
token against the contextless one, whose last token is generated without context. The texts handed to the
engine are built exactly as the reference builds its `model.attribute` calls, so the tokens are the same.
"""

from __future__ import annotations

import time
from typing import Any, cast

from schemas.attribution import AttributionRequest
from schemas.context import CCIScores, ContextAttributionRequest, ContextAttributionResult
from schemas.errors import CostLimitError
from workers.engine.context.cci import cci_job, context_cues, engine_scores, split_scores
from workers.engine.context.prepared import PreparedTexts, prepare_texts, resolve_setup
from workers.engine.context.render import RenderInputs, render_text
from workers.engine.context.selection import rank_tokens
from workers.engine.context.texts import ReferenceTokens
from workers.engine.run import _versions, attribute, job_cost
from workers.engine.sequences import encode_sequences
from workers.methods.registry import build_method
from workers.types import LoadedModel, ProgressFn


def _run(
    loaded: LoadedModel, request: AttributionRequest, on_progress: ProgressFn = lambda _d, _t: None
) -> dict[str, Any]:
    """One engine run; its first (only) sequence."""
    result = attribute(request, loaded, on_progress, result_id="context").result
    return cast(dict[str, Any], result["sequences"][0])


def _cti(
    request: ContextAttributionRequest,
    loaded: LoadedModel,
    tokens: ReferenceTokens,
    texts: PreparedTexts,
    on_progress: ProgressFn,
) -> tuple[list[float], list[str]]:
    """Part 1: the CTI score and token of every generated token, from one engine run."""
    is_ed = tokens.is_encoder_decoder
    engine_request = AttributionRequest(
        model=request.model,
        method="dummy",
        inputs=[texts.contextless_input.rstrip(" ")],
        generated_texts=[texts.contextless_output],
        attribute_target=is_ed,
        step_scores=[request.context_sensitivity_metric],
        contrast_sources=[texts.input_full_text] if is_ed else None,
        contrast_targets=[texts.output_full_text],
        seed=request.seed,
    )
    seq = _run(loaded, engine_request, on_progress)
    start = len(tokens.filtered(texts.contextless_output_prefix, is_target=True))
    scores = engine_scores(seq["step_scores"][request.context_sensitivity_metric])[start:]
    cti_tokens = [t["token"] for t in seq["target"]][start + seq["attr_pos_start"] :]
    if is_ed:
        scores, cti_tokens = scores[:-1], cti_tokens[:-1]
    return scores, cti_tokens


def run_context_attribution(
    request: ContextAttributionRequest,
    loaded: LoadedModel,
    on_progress: ProgressFn,
    result_id: str,
    max_cost: int | None = None,
) -> ContextAttributionResult:
    """Run a PECoRe context-attribution job.

    Args:
        request: the validated request.
        loaded: its model.
        on_progress: called with (done, total): the CTI steps, then one per CCI attribution (the total
            grows once CTI has selected the tokens).
        result_id: the result's `id` (the job's).
        max_cost: refuse (CostLimitError, 422) CCI attributions costing more token-steps in all
            (`workers.engine.run.job_cost`).
    """
    started = time.perf_counter()
    setup = resolve_setup(request)
    tokens = ReferenceTokens(loaded, request.special_tokens_to_keep)
    texts = prepare_texts(request, tokens, setup)
    cti_total = 0

    def cti_progress(done: int, total: int) -> None:
        nonlocal cti_total
        cti_total = total
        on_progress(done, total)

    cti_scores, cti_tokens = _cti(request, loaded, tokens, texts, cti_progress)
    selected, cti_threshold = rank_tokens(
        cti_tokens, cti_scores, request.context_sensitivity_std_threshold, request.context_sensitivity_topk
    )
    jobs = [cci_job(request, tokens, texts, rank, item, len(selected)) for rank, item in enumerate(selected)]
    if max_cost is not None and jobs:
        method = build_method(request.attribution_method, request.method_args)
        cost = sum(job_cost(method, encode_sequences(loaded, job.request)) for job in jobs)
        if cost > max_cost:
            raise CostLimitError(cost, max_cost)
    total = cti_total + len(jobs)
    on_progress(cti_total, total)
    items: list[CCIScores] = []
    for done, job in enumerate(jobs, start=1):
        seq = _run(loaded, job.request)
        input_scores, output_scores = split_scores(tokens, request, texts, seq)
        input_cues, output_cues, cci_threshold = context_cues(request, texts, input_scores, output_scores)
        items.append(
            {
                "cti_idx": job.cti_idx,
                "cti_token": job.cti_token,
                "cti_score": job.cti_score,
                "contextual_output": job.contextual_output,
                "contrast_token": job.contrast_token,
                "contextless_output": job.contextless_output,
                "input_context_scores": input_scores,
                "output_context_scores": output_scores,
                "input_context_cues": input_cues,
                "output_context_cues": output_cues,
                "cci_threshold": cci_threshold,
            }
        )
        on_progress(cti_total + done, total)
    view = RenderInputs(
        metric=request.context_sensitivity_metric,
        method=request.attribution_method,
        attributed_fn=request.attributed_fn,
        cti_std=request.context_sensitivity_std_threshold,
        cti_topk=request.context_sensitivity_topk,
        cci_std=request.attribution_std_threshold,
        cci_topk=request.attribution_topk,
        input_context=setup.input_context,
        input_current=request.input_current_text,
        output_context=texts.output_context,
        output_current=texts.output_current,
        output_current_tokens=tokens.filtered(texts.output_current, is_target=True, readable=True),
        input_context_tokens=None
        if setup.input_context is None
        else tokens.filtered(setup.input_context, readable=True),
        output_context_tokens=None
        if texts.output_context is None
        else tokens.filtered(texts.output_context, is_target=True, readable=True),
        cti_threshold=cti_threshold,
    )
    return {
        "id": result_id,
        "model": {
            "id": loaded.id,
            "architecture": loaded.architecture,
            "is_encoder_decoder": loaded.is_encoder_decoder,
        },
        "input_context": setup.input_context,
        "input_context_tokens": texts.input_context_tokens,
        "output_context": texts.output_context,
        "output_context_tokens": texts.output_context_tokens,
        "output_current": texts.output_current,
        "output_current_tokens": cti_tokens,
        "cti_scores": cti_scores,
        "cti_threshold": cti_threshold,
        "cti_selected": [i for i, _, _ in selected],
        "cci_scores": items,
        "text": render_text(view, items),
        "info": {
            **request.model_dump(),
            "input_template": setup.input_template,
            "output_template": setup.output_template,
            "contextless_input_current_text": setup.contextless_input,
            "contextless_output_current_text": setup.contextless_output,
            "exec_time_s": round(time.perf_counter() - started, 4),
            "versions": _versions(),
            "warnings": setup.warnings,
        },
    }
