"""The output to explain: forced, or generated from the full input and split into output context and current
text (the reference's `prepare_outputs` and `generate_model_output`)."""

from __future__ import annotations

import re
from typing import Any

from schemas.errors import InvalidRequestError
from workers.engine.context.texts import ReferenceTokens, concat_with_sep

_PUNCTUATION = re.compile(r"[\s{}]+".format(re.escape(".?!,;:)]}")))


def _generate_output(
    tokens: ReferenceTokens,
    model_input: str,
    generation_args: dict[str, Any],
    output_template: str,
    prefix: str,
    suffix: str,
    decoder_input_ids: list[int] | None,
) -> str:
    """The generated text, with the template's prefix and suffix checked and stripped."""
    generated = tokens.generate(model_input, generation_args, True, decoder_input_ids)
    if prefix:
        if not generated.startswith(prefix):
            raise InvalidRequestError(
                f"output_template {output_template!r} has the prefix {prefix!r} but the model generated "
                f"{generated!r}: check the template, or force output_context_text / output_current_text"
            )
        generated = generated[len(prefix) :]
    if suffix:
        if not generated.endswith(suffix):
            raise InvalidRequestError(
                f"output_template {output_template!r} has the suffix {suffix!r} but the model generated "
                f"{generated!r}: check the template, or force output_current_text"
            )
        generated = generated[: -len(suffix)]
    return generated


def prepare_outputs(
    tokens: ReferenceTokens,
    input_full_text: str,
    output_context: str | None,
    output_current: str | None,
    output_template: str,
    generation_args: dict[str, Any],
    separator: str,
) -> tuple[str | None, str]:
    """(output context, output current text): the forced ones, or generated (the six settings of the
    reference's `prepare_outputs`; `auto` splitting only, as a service has no one to ask)."""
    use_context = "{context}" in output_template
    has_context = output_context is not None
    if has_context == use_context and output_current is not None:
        return output_context, output_current
    prefix = output_template.split("{context}" if use_context else "{current}")[0]
    current_prefix_template, suffix = output_template.split("{current}")
    model_input = input_full_text
    decoder_input_ids = None
    current_prefix = prefix
    if has_context and output_current is None:
        current_prefix = current_prefix_template.strip().format(context=output_context)
        if tokens.is_encoder_decoder:
            decoder_input_ids = tokens.decoder_prefix(current_prefix, add_special_tokens=False)
            if "forced_bos_token_id" in generation_args:
                decoder_input_ids[0] = generation_args["forced_bos_token_id"]
        else:
            model_input = concat_with_sep(input_full_text, current_prefix, separator)
            current_prefix = model_input
    elif not tokens.is_encoder_decoder:
        model_input = concat_with_sep(input_full_text, "", separator)
    generated = _generate_output(
        tokens, model_input, generation_args, output_template, current_prefix, suffix, decoder_input_ids
    )
    if has_context == use_context:
        return output_context, generated.strip()
    return _split(generated, output_template, output_current)


def _split(generated: str, output_template: str, output_current: str | None) -> tuple[str, str]:
    """Split a generation holding both the output context and the current text: on the template's
    separator when it occurs once, else on punctuation when that gives two parts."""
    separator = output_template.split("{context}")[1].split("{current}")[0]
    candidate = None
    parts = generated.split(separator) if separator else [generated]
    if len(parts) == 2:
        candidate = parts[0]
    if not candidate:
        pieces = [s for s in _PUNCTUATION.split(generated) if s]
        if len(pieces) == 2:
            candidate = pieces[0]
    if not candidate:
        # The reference then aligns input and output words with an aligner model, or asks a person.
        raise InvalidRequestError(
            f"could not split the generated output {generated!r} into an output context and a current text "
            f"(output_template {output_template!r}): give output_context_text"
        )
    context_part = output_template.split("{current}")[0].format(context=candidate)
    current = generated[min(len(context_part), len(generated)) :]
    if output_current is None and not current:
        raise InvalidRequestError(
            f"the model produced an empty current output after the output context {candidate!r}: "
            "give output_context_text"
        )
    return candidate, (output_current if output_current is not None else current).strip()
