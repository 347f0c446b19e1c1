"""Part 2 of PECoRe, contextual cues imputation (CCI): the engine request that attributes one
context-sensitive token, and the split of its scores into input and output context scores and cues."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from schemas.attribution import AggregationOptions, AttributionRequest
from schemas.context import ContextAttributionRequest
from schemas.errors import InvalidRequestError
from schemas.step_functions import STEP_FUNCTION_SPECS
from workers.engine.context.prepared import PreparedTexts, generation_args
from workers.engine.context.selection import rank_tokens
from workers.engine.context.texts import ReferenceTokens, concat_with_sep


def engine_scores(column: list[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in column]


@dataclass(frozen=True)
class CCIJob:
    """One context-sensitive token to attribute, and the engine request that does it."""

    cti_idx: int
    cti_score: float
    cti_token: str
    contextual_output: str
    contextless_output: str | None
    contrast_token: str | None
    request: AttributionRequest


def cci_job(
    request: ContextAttributionRequest,
    tokens: ReferenceTokens,
    texts: PreparedTexts,
    rank: int,
    selected: tuple[int, float, str],
    n_selected: int,
) -> CCIJob:
    """The reference's CCI step for one token, up to its `model.attribute` call."""
    cti_idx, cti_score, cti_token = selected
    is_ed = tokens.is_encoder_decoder
    position = texts.output_current_offset + cti_idx
    contextual_output = tokens.to_string(texts.output_full_tokens[: position + 1]).lstrip(" ")
    if not contextual_output:
        output_ctx_tokens = [texts.output_full_tokens[position]]
        if is_ed and tokens.pad_token is not None:
            output_ctx_tokens.append(tokens.pad_token)
        contextual_output = tokens.to_string(output_ctx_tokens, skip_special_tokens=True)
    else:
        output_ctx_tokens = tokens.tokens(contextual_output, as_targets=is_ed)
    fn_args: dict[str, Any] = {}
    contrast: dict[str, Any] = {}
    contextless_output = contrast_token = None
    if STEP_FUNCTION_SPECS[request.attributed_fn].contrastive:
        contextless_input = texts.contextless_input
        if not is_ed:
            contextless_input = concat_with_sep(
                contextless_input, texts.contextless_output_prefix, request.decoder_input_output_separator
            )
        contextless_output = contextless_output_text(
            request, tokens, texts, contextless_input, cti_idx, rank, n_selected
        )
        contrast = {
            "contrast_sources": [contextless_input] if is_ed else None,
            "contrast_targets": [contextless_output],
        }
        ctxless_tokens = tokens.tokens(contextless_output, as_targets=is_ed)
        tok_pos = -2 if is_ed else -1
        contrast_token = ctxless_tokens[tok_pos]
        if request.attributed_fn == "kl_divergence" or output_ctx_tokens[tok_pos] == ctxless_tokens[tok_pos]:
            fn_args["contrast_force_inputs"] = True
    bos_offset = int(
        is_ed or (output_ctx_tokens[0] == tokens.bos_token and tokens.bos_token not in tokens.keep)
    )
    engine_request = AttributionRequest(
        model=request.model,
        method=request.attribution_method,
        method_args=request.method_args,
        inputs=[texts.contextual_input],
        generated_texts=[contextual_output],
        attribute_target=is_ed and texts.setup.has_output_context,
        attr_pos_start=position + bos_offset,
        attributed_fn=request.attributed_fn,
        attributed_fn_args=fn_args,
        aggregation=AggregationOptions(normalize=False),
        generation_args=request.generation_args,
        seed=request.seed,
        **contrast,
    )
    return CCIJob(
        cti_idx, cti_score, cti_token, contextual_output, contextless_output, contrast_token, engine_request
    )


def contextless_output_text(
    request: ContextAttributionRequest,
    tokens: ReferenceTokens,
    texts: PreparedTexts,
    contextless_input: str,
    cti_idx: int,
    rank: int,
    n_selected: int,
) -> str:
    """The contextless output: the contextual prefix, then the forced next token or the one generated
    without context (`get_contextless_output`)."""
    forced = request.contextless_output_next_tokens
    is_ed = tokens.is_encoder_decoder
    if forced:
        if len(forced) != n_selected:
            raise InvalidRequestError(
                f"contextless_output_next_tokens has {len(forced)} tokens, CTI selected {n_selected}: give "
                "one per context-sensitive token"
            )
        next_token = tokens.tokens(forced[rank], as_targets=is_ed)[0]
        return tokens.to_string([*texts.output_current_tokens[:cti_idx], next_token])
    prefix = tokens.to_string(texts.output_current_tokens[:cti_idx])
    args = generation_args(request)
    if is_ed:
        args["max_new_tokens"] = 2  # the EOS an encoder-decoder always forces at the end
        return tokens.generate(contextless_input, args, False, tokens.decoder_prefix(prefix))
    args["max_new_tokens"] = 1
    text = concat_with_sep(contextless_input, prefix, request.decoder_input_output_separator)
    return tokens.generate(text, args, False)


def split_scores(
    tokens: ReferenceTokens, request: ContextAttributionRequest, texts: PreparedTexts, seq: dict[str, Any]
) -> tuple[list[float] | None, list[float] | None]:
    """The CCI scores over the input context and the output context (`get_source_target_cci_scores`)."""
    setup = texts.setup
    is_ed = tokens.is_encoder_decoder
    input_scores = output_scores = None
    if setup.has_input_context and texts.input_context_tokens is not None:
        matrix = seq["source_attributions"] if is_ed else seq["target_attributions"]
        column = engine_scores([row[0] for row in matrix])
        prefix = setup.input_template.partition("{context}")[0]
        if "{current}" in prefix:
            prefix = prefix.format(current=request.input_current_text)
        start = len(tokens.filtered(prefix))
        input_scores = column[start : start + len(texts.input_context_tokens)]
    if setup.has_output_context and texts.output_context_tokens is not None:
        column = engine_scores([row[0] for row in seq["target_attributions"]])
        prefix = setup.output_template.partition("{context}")[0]
        if not is_ed and prefix:
            prefix = request.decoder_input_output_separator + prefix
        start = len(tokens.filtered(prefix, is_target=True))
        if not is_ed:
            start += len(texts.input_full_tokens)
        output_scores = column[start : start + len(texts.output_context_tokens)]
    return input_scores, output_scores


def context_cues(
    request: ContextAttributionRequest,
    texts: PreparedTexts,
    input_scores: list[float] | None,
    output_scores: list[float] | None,
) -> tuple[list[int], list[int], float]:
    """Input and output context cues, ranked, and their threshold over all context scores together (the
    reference's view: `format_context_comment`)."""
    everything = [*(input_scores or []), *(output_scores or [])]
    std, topk = request.attribution_std_threshold, request.attribution_topk
    input_cues: list[int] = []
    output_cues: list[int] = []
    threshold = 0.0
    if input_scores is not None and texts.input_context_tokens is not None:
        ranked, threshold = rank_tokens(
            texts.input_context_tokens, [*input_scores, *(output_scores or [])], std, topk
        )
        input_cues = [i for i, _, _ in ranked]
    if output_scores is not None and texts.output_context_tokens is not None:
        ranked, threshold = rank_tokens(
            texts.output_context_tokens, [*output_scores, *(input_scores or [])], std, topk
        )
        output_cues = [i for i, _, _ in ranked]
    if not everything:
        threshold = 0.0
    return input_cues, output_cues, threshold
