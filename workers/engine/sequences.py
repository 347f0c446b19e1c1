"""Turning request texts into token sequences: tokenization, generation, forced targets, contrastive inputs.

Conventions follow the reference library so that scores can be compared one to one: generated ids are
decoded to text and tokenized again; decoder-only targets are prompt + continuation; encoder-decoder targets
start with the decoder start token; attributed positions default to the continuation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from schemas.attribution import AttributionRequest
from schemas.defaults import MAX_SEQUENCE_TOKENS
from schemas.errors import InvalidRequestError
from workers.engine.contrast import ContrastSequence, build_contrast
from workers.engine.languages import forced_bos_token_id, tokenizer_languages
from workers.engine.text_encoder import TextEncoder
from workers.types import LoadedModel


@dataclass(frozen=True)
class EncodedSequence:
    """One sequence to attribute. Step `p` in [attr_pos_start, attr_pos_end) explains `target_ids[p]`."""

    source_ids: list[int]
    target_ids: list[int]
    attr_pos_start: int
    attr_pos_end: int
    contrast: ContrastSequence | None = None

    @property
    def positions(self) -> list[int]:
        return list(range(self.attr_pos_start, self.attr_pos_end))


def _generate(
    loaded: LoadedModel, source_ids: list[int], request: AttributionRequest, decoder_prefix: list[int] | None
) -> list[int]:
    args = request.generation_args.model_dump(exclude_none=True)
    if request.target_lang is not None and "forced_bos_token_id" not in args:
        args["forced_bos_token_id"] = forced_bos_token_id(loaded, request.target_lang)
    ids = torch.tensor([source_ids], device=loaded.device)
    pad = loaded.tokenizer.pad_token_id
    if pad is None:
        pad = loaded.model.generation_config.eos_token_id or loaded.tokenizer.eos_token_id
    if isinstance(pad, list):
        pad = pad[0]
    if decoder_prefix is not None:
        args["decoder_input_ids"] = torch.tensor([decoder_prefix], device=loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=pad, **args
        )
    return out[0].tolist()


def _check_length(loaded: LoadedModel, index: int, n_tokens: int) -> None:
    limit = loaded.entry.max_sequence_tokens or MAX_SEQUENCE_TOKENS
    if n_tokens > limit:
        raise InvalidRequestError(
            f"sequence {index} has {n_tokens} tokens; model {loaded.id!r} accepts at most {limit}",
            limit=limit,
            tokens=n_tokens,
        )


def _positions(request: AttributionRequest, default_start: int, length: int) -> tuple[int, int]:
    start = default_start if request.attr_pos_start is None else max(request.attr_pos_start, default_start)
    end = length if request.attr_pos_end is None else min(request.attr_pos_end, length)
    if start >= end:
        raise InvalidRequestError(
            f"no position to attribute: attr_pos_start={start} is not before attr_pos_end={end} "
            f"(target length {length})"
        )
    return start, end


def _decoder_only(encoder: TextEncoder, index: int, request: AttributionRequest) -> EncodedSequence:
    loaded = encoder.loaded
    prompt = encoder.clean(request.inputs[index])
    source_ids = encoder.source(prompt)
    _check_length(loaded, index, len(source_ids) + request.generation_args.max_new_tokens)
    if request.generated_texts is not None:
        full_text = encoder.clean(request.generated_texts[index])
        if not full_text.startswith(prompt):
            raise InvalidRequestError(
                f"generated_texts[{index}] must start with inputs[{index}] for a decoder-only model "
                "(the forced text is the whole sequence, prompt included)"
            )
    if request.generated_texts is None or request.generate_from_target_prefix:
        generation_input = source_ids if request.generated_texts is None else encoder.source(full_text)
        generated = _generate(loaded, generation_input, request, decoder_prefix=None)
        # Like the reference library, decode and tokenize again; but drop a BOS the tokenizer added, or the
        # text would start with "<s>" instead of the prompt and get a second BOS.
        bos = loaded.tokenizer.bos_token_id
        while bos is not None and generated and generated[0] == bos and source_ids[:1] == [bos]:
            generated = generated[1:]
        full_text = encoder.decode(generated, skip_special_tokens=False)
    target_ids = encoder.source(full_text)
    _check_length(loaded, index, len(target_ids))
    start, end = _positions(request, len(source_ids), len(target_ids))
    return EncodedSequence(source_ids, target_ids, start, end)


def _encoder_decoder(encoder: TextEncoder, index: int, request: AttributionRequest) -> EncodedSequence:
    loaded = encoder.loaded
    source_ids = encoder.source(encoder.clean(request.inputs[index]))
    _check_length(loaded, index, len(source_ids) + request.generation_args.max_new_tokens)
    if request.generated_texts is not None and not request.generate_from_target_prefix:
        target_text = encoder.clean(request.generated_texts[index])
    else:
        prefix = None
        if request.generated_texts is not None:
            # The decoder starts from the given prefix: decoder start token + its tokens, no closing EOS.
            prefix = encoder.target(encoder.clean(request.generated_texts[index]), add_special_tokens=False)
        generated = _generate(loaded, source_ids, request, decoder_prefix=prefix)
        target_text = encoder.decode(generated, skip_special_tokens=True)
    target_ids = encoder.target(target_text)
    _check_length(loaded, index, len(source_ids) + len(target_ids))
    start, end = _positions(request, 1, len(target_ids))
    return EncodedSequence(source_ids, target_ids, start, end)


def encode_sequences(loaded: LoadedModel, request: AttributionRequest) -> list[EncodedSequence]:
    """Tokenize (and generate, unless targets are forced) every input of the request, with its contrastive
    counterpart when the request has one."""
    if request.seed is not None:
        torch.manual_seed(request.seed)
    encoder = TextEncoder(loaded, request.skip_special_tokens)
    build = _encoder_decoder if loaded.is_encoder_decoder else _decoder_only
    sequences = []
    with tokenizer_languages(loaded, request.source_lang, request.target_lang):
        for index in range(len(request.inputs)):
            seq = build(encoder, index, request)
            contrast = build_contrast(encoder, index, request, seq.source_ids, seq.target_ids, seq.positions)
            if contrast is not None:
                _check_length(loaded, index, len(contrast.source_ids) + len(contrast.target_ids))
                seq = EncodedSequence(
                    seq.source_ids, seq.target_ids, seq.attr_pos_start, seq.attr_pos_end, contrast
                )
            sequences.append(seq)
    return sequences
