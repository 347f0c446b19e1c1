"""Tokens and texts the reference's way: the string-level helpers of `inseq attribute-context`.

The reference works on token strings (`Ġto`), tokenizing, filtering special tokens and joining them back
into text between its steps; the texts it hands to `model.attribute` come from those round trips, so the
engine is given the same texts to get the same tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from workers.engine.text_encoder import decoder_start_id
from workers.types import LoadedModel

_READABLE = {"Ġ": " ", "Ċ": "\n", "▁": " "}
"""Vocabulary markers replaced when tokens are shown as text (`replace_special_characters`)."""


def concat_with_sep(first: str, second: str, sep: str) -> str:
    """`first + sep + second`, without doubling a separator already at the junction."""
    if not first.endswith(sep) and not second.startswith(sep):
        return first + sep + second
    return first + second


def format_template(template: str, current: str, context: str | None = None) -> str:
    return (
        template.format(current=current)
        if context is None
        else template.format(current=current, context=context)
    )


class ReferenceTokens:
    """The tokenizer as the reference's `HuggingfaceModel` uses it: token strings, special tokens, generation.

    Args:
        loaded: the model and its tokenizer.
        keep: special tokens kept in texts (`special_tokens_to_keep`).
    """

    def __init__(self, loaded: LoadedModel, keep: list[str]) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.is_encoder_decoder = loaded.is_encoder_decoder
        self.keep = keep
        self.special = set(self.tokenizer.all_special_tokens)
        config = loaded.model.config
        bos_id = getattr(config, "decoder_start_token_id", None)
        if bos_id is None:
            bos_id = config.bos_token_id
        self.bos_token = None if bos_id is None else self.tokenizer.convert_ids_to_tokens(bos_id)
        eos = config.eos_token_id
        self.eos_token_id = eos[0] if isinstance(eos, list) else eos
        pad = config.pad_token_id
        if pad is None:
            pad = (
                self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_id
            )
        self.pad_token_id = pad
        self.pad_token = None if pad is None else self.tokenizer.convert_ids_to_tokens(pad)

    def ids(self, text: str, as_targets: bool = False, add_special_tokens: bool = True) -> list[int]:
        as_targets = as_targets and self.is_encoder_decoder
        encoded = (
            self.tokenizer(text_target=text, add_special_tokens=add_special_tokens)
            if as_targets
            else self.tokenizer(text, add_special_tokens=add_special_tokens)
        )
        return list(encoded["input_ids"])

    def tokens(self, text: str, as_targets: bool = False) -> list[str]:
        """The text's tokens, special ones included (the reference's `convert_string_to_tokens`)."""
        return list(self.tokenizer.convert_ids_to_tokens(self.ids(text, as_targets)))

    def filtered(self, text: str, is_target: bool = False, readable: bool = False) -> list[str]:
        """The text's tokens without special tokens other than the kept ones (`get_filtered_tokens`)."""
        tokens = [t for t in self.tokens(text, is_target) if t not in self.special or t in self.keep]
        if readable:
            for marker, char in _READABLE.items():
                tokens = [t.replace(marker, char) for t in tokens]
        return tokens

    def to_string(self, tokens: list[str], skip_special_tokens: bool = False) -> str:
        if not tokens:
            return ""
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self.special]
        return str(self.tokenizer.convert_tokens_to_string(tokens))

    def generate(
        self,
        text: str,
        generation_args: dict[str, Any],
        output_generated_only: bool,
        decoder_input_ids: list[int] | None = None,
    ) -> str:
        """Generate from `text` and return the text without special tokens other than the kept ones
        (`generate_with_special_tokens`)."""
        source = self.ids(text)
        bos = self.tokenizer.bos_token_id
        if bos is not None and len(source) >= 2 and source[0] == source[1] == bos:
            source = source[1:]  # the reference's encode drops a doubled BOS
        device = self.loaded.device
        ids = torch.tensor([source], device=device)
        args = dict(generation_args)
        if decoder_input_ids is not None:
            args["decoder_input_ids"] = torch.tensor([decoder_input_ids], device=device)
        with torch.inference_mode():
            out = self.loaded.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=self.pad_token_id, **args
            )[0].tolist()
        if output_generated_only and not self.is_encoder_decoder:
            out = out[len(source) :]
        decoded = self.tokenizer.decode(out, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self.to_string(self.filtered(decoded, is_target=True))

    def decoder_prefix(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Decoder input ids for an encoder-decoder prefix: start token, the text's target tokens, no EOS."""
        ids = [
            decoder_start_id(self.loaded),
            *self.ids(text, as_targets=True, add_special_tokens=add_special_tokens),
        ]
        if len(ids) > 1 and ids[-1] == self.eos_token_id:
            ids = ids[:-1]
        return ids
