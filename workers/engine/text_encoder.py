"""Tokenizing texts the reference library's way, for sources, targets and their contrastive counterparts."""

from __future__ import annotations

from schemas.errors import InvalidRequestError
from workers.types import LoadedModel


class TextEncoder:
    """Encodes and decodes texts for one request.

    Args:
        loaded: the model and its tokenizer.
        skip_special_tokens: encode without the tokenizer's special tokens and strip special-token strings
            from texts first (the decoder start token of encoder-decoder targets is still prepended).
    """

    def __init__(self, loaded: LoadedModel, skip_special_tokens: bool = False) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.skip_special_tokens = skip_special_tokens

    def clean(self, text: str) -> str:
        """The text as encoded: without special-token strings when `skip_special_tokens` is set."""
        if not self.skip_special_tokens:
            return text
        for special in self.tokenizer.all_special_tokens:
            text = text.replace(special, "")
        return text

    def _ids(self, text: str, as_target: bool, add_special_tokens: bool) -> list[int]:
        add = add_special_tokens and not self.skip_special_tokens
        encoded = (
            self.tokenizer(text_target=text, add_special_tokens=add)
            if as_target
            else self.tokenizer(text, add_special_tokens=add)
        )
        ids = list(encoded["input_ids"])
        bos = self.tokenizer.bos_token_id
        # A text that already starts with the BOS string (e.g. from a chat template) gets BOS twice; keep one.
        if bos is not None and len(ids) >= 2 and ids[0] == ids[1] == bos:
            ids = ids[1:]
        return ids

    def source(self, text: str) -> list[int]:
        """Encoder input; for decoder-only models, any decoder text (prompt, prompt + continuation)."""
        return self._ids(text, as_target=False, add_special_tokens=True)

    def target(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Encoder-decoder target: the decoder start token, then the text's target-side tokens."""
        return [
            self.decoder_start_id(),
            *self._ids(text, as_target=True, add_special_tokens=add_special_tokens),
        ]

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return str(
            self.tokenizer.decode(
                ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
            )
        )

    def decoder_start_id(self) -> int:
        return decoder_start_id(self.loaded)


def decoder_start_id(loaded: LoadedModel) -> int:
    """The token an encoder-decoder model's decoder starts with (its config's, else BOS)."""
    config = loaded.model.config
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = config.bos_token_id
    if start is None:
        raise InvalidRequestError(f"model {loaded.id!r} defines no decoder start token")
    return int(start)
