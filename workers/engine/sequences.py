"""Turning request texts into token sequences: tokenization, generation, forced targets.

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
from workers.types import LoadedModel


@dataclass(frozen=True)
class EncodedSequence:
    """One sequence to attribute. Step `p` in [attr_pos_start, attr_pos_end) explains `target_ids[p]`."""

    source_ids: list[int]
    target_ids: list[int]
    attr_pos_start: int
    attr_pos_end: int

    @property
    def positions(self) -> list[int]:
        return list(range(self.attr_pos_start, self.attr_pos_end))


def _encode(loaded: LoadedModel, text: str, as_target: bool = False) -> list[int]:
    tok = loaded.tokenizer
    ids = (tok(text_target=text) if as_target else tok(text))["input_ids"]
    bos = tok.bos_token_id
    # A text that already starts with the BOS string (e.g. from a chat template) gets BOS twice; keep one.
    if bos is not None and len(ids) >= 2 and ids[0] == ids[1] == bos:
        ids = ids[1:]
    return list(ids)


def _decoder_start_id(loaded: LoadedModel) -> int:
    config = loaded.model.config
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = config.bos_token_id
    if start is None:
        raise InvalidRequestError(f"model {loaded.id!r} defines no decoder start token")
    return int(start)


def _generate(loaded: LoadedModel, source_ids: list[int], request: AttributionRequest) -> list[int]:
    args = request.generation_args.model_dump(exclude_none=True)
    ids = torch.tensor([source_ids], device=loaded.device)
    pad = loaded.tokenizer.pad_token_id
    if pad is None:
        pad = loaded.model.generation_config.eos_token_id or loaded.tokenizer.eos_token_id
    if isinstance(pad, list):
        pad = pad[0]
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


def _decoder_only(loaded: LoadedModel, index: int, request: AttributionRequest) -> EncodedSequence:
    prompt = request.inputs[index]
    source_ids = _encode(loaded, prompt)
    _check_length(loaded, index, len(source_ids) + request.generation_args.max_new_tokens)
    if request.generated_texts is not None:
        full_text = request.generated_texts[index]
        if not full_text.startswith(prompt):
            raise InvalidRequestError(
                f"generated_texts[{index}] must start with inputs[{index}] for a decoder-only model "
                "(the forced text is the whole sequence, prompt included)"
            )
    else:
        generated = _generate(loaded, source_ids, request)
        # Like the reference library, decode and tokenize again; but drop a BOS the tokenizer added, or the
        # text would start with "<s>" instead of the prompt and get a second BOS.
        bos = loaded.tokenizer.bos_token_id
        while bos is not None and generated and generated[0] == bos and source_ids[:1] == [bos]:
            generated = generated[1:]
        full_text = loaded.tokenizer.decode(
            generated, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
    target_ids = _encode(loaded, full_text)
    _check_length(loaded, index, len(target_ids))
    start, end = _positions(request, len(source_ids), len(target_ids))
    return EncodedSequence(source_ids, target_ids, start, end)


def _encoder_decoder(loaded: LoadedModel, index: int, request: AttributionRequest) -> EncodedSequence:
    source_ids = _encode(loaded, request.inputs[index])
    _check_length(loaded, index, len(source_ids) + request.generation_args.max_new_tokens)
    if request.generated_texts is not None:
        target_text = request.generated_texts[index]
    else:
        generated = _generate(loaded, source_ids, request)
        target_text = loaded.tokenizer.decode(
            generated, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
    target_ids = [_decoder_start_id(loaded), *_encode(loaded, target_text, as_target=True)]
    _check_length(loaded, index, len(source_ids) + len(target_ids))
    start, end = _positions(request, 1, len(target_ids))
    return EncodedSequence(source_ids, target_ids, start, end)


def encode_sequences(loaded: LoadedModel, request: AttributionRequest) -> list[EncodedSequence]:
    """Tokenize (and generate, unless targets are forced) every input of the request."""
    if request.seed is not None:
        torch.manual_seed(request.seed)
    build = _encoder_decoder if loaded.is_encoder_decoder else _decoder_only
    return [build(loaded, i, request) for i in range(len(request.inputs))]
