"""Source and target languages of multilingual translation models (M2M100, NLLB, mBART-50 style tokenizers),
set for one request and restored afterwards: the tokenizer is shared by every job of the worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from schemas.errors import InvalidRequestError
from workers.types import LoadedModel


def language_codes(tokenizer: Any) -> list[str]:
    """The language codes a tokenizer knows (empty when it cannot tell)."""
    mapping = getattr(tokenizer, "lang_code_to_id", None)
    if mapping:
        return sorted(mapping)
    return sorted(getattr(tokenizer, "additional_special_tokens", None) or [])


def forced_bos_token_id(loaded: LoadedModel, target_lang: str) -> int:
    """The token id that starts a generation in `target_lang`."""
    tok = loaded.tokenizer
    if hasattr(tok, "get_lang_id"):
        return int(tok.get_lang_id(target_lang))
    mapping = getattr(tok, "lang_code_to_id", None)
    if mapping and target_lang in mapping:
        return int(mapping[target_lang])
    return int(tok.convert_tokens_to_ids(target_lang))


@contextmanager
def tokenizer_languages(
    loaded: LoadedModel, source_lang: str | None, target_lang: str | None
) -> Iterator[None]:
    """The tokenizer set to the request's languages for the block, restored afterwards in any case.

    Raises:
        InvalidRequestError: the model's tokenizer has no languages, or does not know a code.
    """
    if source_lang is None and target_lang is None:
        yield
        return
    tok = loaded.tokenizer
    if not hasattr(tok, "src_lang"):
        raise InvalidRequestError(
            f"model {loaded.id!r} has no source/target languages: source_lang and target_lang apply to "
            "multilingual translation models (M2M100, NLLB, mBART-50)"
        )
    codes = language_codes(tok)
    for name, code in (("source_lang", source_lang), ("target_lang", target_lang)):
        if code is not None and codes and code not in codes:
            raise InvalidRequestError(
                f"{name} {code!r} is not a language of model {loaded.id!r}; valid codes: {', '.join(codes)}",
                available=codes,
            )
    saved_source, saved_target = tok.src_lang, getattr(tok, "tgt_lang", None)
    try:
        if source_lang is not None:
            tok.src_lang = source_lang
        if target_lang is not None:
            tok.tgt_lang = target_lang
        yield
    finally:
        tok.src_lang = saved_source
        tok.tgt_lang = saved_target
