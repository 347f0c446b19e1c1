"""The request with the reference's defaults resolved, and the texts and tokens it derives before CTI
(`AttributeContextArgs.__post_init__` and the start of `attribute_context_with_model`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.context import ContextAttributionRequest
from schemas.errors import InvalidRequestError
from workers.engine.context.outputs import prepare_outputs
from workers.engine.context.texts import ReferenceTokens, concat_with_sep, format_template


@dataclass(frozen=True)
class ContextSetup:
    """The request with the reference's defaults resolved (`AttributeContextArgs.__post_init__`)."""

    input_template: str
    output_template: str
    contextless_input: str
    contextless_output: str
    input_context: str | None
    output_context: str | None
    warnings: list[str]

    @property
    def has_input_context(self) -> bool:
        return "{context}" in self.input_template

    @property
    def has_output_context(self) -> bool:
        return "{context}" in self.output_template


def resolve_setup(request: ContextAttributionRequest) -> ContextSetup:
    warnings: list[str] = []
    input_template = request.input_template or (
        "{current}" if request.input_context_text is None else "{context} {current}"
    )
    output_template = request.output_template or (
        "{current}" if request.output_context_text is None else "{context} {current}"
    )
    input_context, output_context = request.input_context_text, request.output_context_text
    if input_context and "{context}" not in input_template:
        warnings.append(
            f"input_template {input_template!r} has no {{context}}: input_context_text is ignored"
        )
        input_context = None
    if output_context and "{context}" not in output_template:
        warnings.append(
            f"output_template {output_template!r} has no {{context}}: output_context_text is ignored"
        )
        output_context = None
    if "{context}" in input_template and not input_context:
        raise InvalidRequestError(
            f"input_template {input_template!r} has {{context}}: give input_context_text"
        )
    return ContextSetup(
        input_template,
        output_template,
        request.contextless_input_current_text or "{current}",
        request.contextless_output_current_text or "{current}",
        input_context,
        output_context,
        warnings,
    )


def generation_args(request: ContextAttributionRequest) -> dict[str, Any]:
    return request.generation_args.model_dump(exclude_none=True)


@dataclass(frozen=True)
class PreparedTexts:
    """The texts and token lists the reference derives before CTI."""

    setup: ContextSetup
    input_full_text: str
    output_context: str | None
    output_current: str
    output_full_text: str
    input_context_tokens: list[str] | None
    output_context_tokens: list[str] | None
    output_current_tokens: list[str]
    input_full_tokens: list[str]
    output_full_tokens: list[str]
    output_current_offset: int
    contextless_input: str
    contextless_output: str
    contextless_output_prefix: str
    contextual_input: str


def prepare_texts(
    request: ContextAttributionRequest, tokens: ReferenceTokens, setup: ContextSetup
) -> PreparedTexts:
    is_ed = tokens.is_encoder_decoder
    sep = request.decoder_input_output_separator
    input_full = format_template(setup.input_template, request.input_current_text, setup.input_context)
    output_context, output_current = prepare_outputs(
        tokens,
        input_full,
        setup.output_context,
        request.output_current_text,
        setup.output_template,
        generation_args(request),
        sep,
    )
    output_full = format_template(setup.output_template, output_current, output_context)
    if not is_ed:
        output_full = concat_with_sep(input_full, output_full, sep)
    input_context_tokens = None if setup.input_context is None else tokens.filtered(setup.input_context)
    output_current_tokens = tokens.filtered(output_current, is_target=True)
    output_context_tokens = (
        None if output_context is None else tokens.filtered(output_context, is_target=True)
    )
    input_full_tokens = tokens.filtered(input_full)
    output_full_tokens = tokens.filtered(output_full, is_target=True)
    contextless_input = setup.contextless_input.format(current=request.input_current_text)
    contextless_output = setup.contextless_output.format(current=output_current)
    if not is_ed:
        contextless_input = concat_with_sep(contextless_input, "", sep)
        contextless_output = contextless_input + contextless_output
    return PreparedTexts(
        setup=setup,
        input_full_text=input_full,
        output_context=output_context,
        output_current=output_current,
        output_full_text=output_full,
        input_context_tokens=input_context_tokens,
        output_context_tokens=output_context_tokens,
        output_current_tokens=output_current_tokens,
        input_full_tokens=input_full_tokens,
        output_full_tokens=output_full_tokens,
        output_current_offset=len(output_full_tokens) - len(output_current_tokens),
        contextless_input=contextless_input,
        contextless_output=contextless_output,
        contextless_output_prefix=setup.contextless_output.split("{current}")[0],
        contextual_input=tokens.to_string(input_full_tokens).lstrip(" "),
    )
