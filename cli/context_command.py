"""The options of `seqattr attribute-context` (PECoRe) and their parsing; the run itself is `cli.context`,
imported only when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.attribute_command import _args
from cli.common import DEFAULT_URL, ApiKey, Local, MaxNewTokens, MethodArgs, Model, Url, reported
from schemas.context import (
    DEFAULT_CONTEXT_ATTRIBUTED_FN,
    DEFAULT_CONTEXT_METHOD,
    DEFAULT_CONTEXT_SENSITIVITY_METRIC,
)

_TEXTS, _SELECTION, _SERVICE, _OUTPUT = "Texts", "Selection", "Service", "Output"


def _text(option: str, help_text: str) -> Any:
    return typer.Option(option, help=help_text, rich_help_panel=_TEXTS, show_default=False)


def attribute_context(  # noqa: PLR0913 (one parameter per option of the reference's command)
    input_current: Annotated[str, _text("--input-current", "The input (prompt or source), as {current}.")],
    input_context: Annotated[str | None, _text("--input-context", "The input context, as {context}.")] = None,
    output_context: Annotated[str | None, _text("--output-context", "An output context.")] = None,
    output_current: Annotated[
        str | None, _text("--output-current", "The output to explain (forced); generated when absent.")
    ] = None,
    input_template: Annotated[
        str | None, _text("--input-template", "Default '{context} {current}' with a context.")
    ] = None,
    output_template: Annotated[
        str | None, _text("--output-template", "Default '{context} {current}' with an output context.")
    ] = None,
    contextless_input_current: Annotated[
        str | None, _text("--contextless-input-current", "The input without context (with {current}).")
    ] = None,
    contextless_output_current: Annotated[
        str | None, _text("--contextless-output-current", "The output without context (with {current}).")
    ] = None,
    model: Model = None,
    context_sensitivity_metric: Annotated[
        str | None,
        typer.Option(
            help="Contrastive step function of the CTI part.",
            show_default=DEFAULT_CONTEXT_SENSITIVITY_METRIC,
            rich_help_panel=_SELECTION,
        ),
    ] = None,
    context_sensitivity_std_threshold: Annotated[
        float | None,
        typer.Option(
            help="CTI: standard deviations above the mean.", show_default="1.0", rich_help_panel=_SELECTION
        ),
    ] = None,
    context_sensitivity_topk: Annotated[
        int | None, typer.Option(min=1, help="CTI: then keep the top k.", rich_help_panel=_SELECTION)
    ] = None,
    attribution_method: Annotated[
        str | None,
        typer.Option(
            "--attribution-method",
            "-a",
            help="Attribution method of the CCI part (`seqattr methods`).",
            show_default=DEFAULT_CONTEXT_METHOD,
            rich_help_panel=_SELECTION,
        ),
    ] = None,
    attributed_fn: Annotated[
        str | None,
        typer.Option(
            help="Contrastive function attributed in the CCI part.",
            show_default=DEFAULT_CONTEXT_ATTRIBUTED_FN,
            rich_help_panel=_SELECTION,
        ),
    ] = None,
    attribution_std_threshold: Annotated[
        float | None,
        typer.Option(
            help="CCI: standard deviations above the mean.", show_default="1.0", rich_help_panel=_SELECTION
        ),
    ] = None,
    attribution_topk: Annotated[
        int | None, typer.Option(min=1, help="CCI: then keep the top k cues.", rich_help_panel=_SELECTION)
    ] = None,
    handle_output_context_strategy: Annotated[
        str | None,
        typer.Option(
            help="auto or pre ('manual' needs a terminal prompt: refused).", rich_help_panel=_SELECTION
        ),
    ] = None,
    method_args: MethodArgs = None,
    max_new_tokens: MaxNewTokens = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    local: Local = False,
    save: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Write the result to this file: .json (the result) or .txt (its text rendering).",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    view: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="Write the HTML view to this file.", rich_help_panel=_OUTPUT),
    ] = None,
) -> None:
    """Context attribution (PECoRe, the reference's `inseq attribute-context`): which generated tokens depend
    on the context (CTI), and which context tokens they used (CCI). Prints the text rendering in colour:
    context-sensitive tokens in red, their cues in blue."""
    from cli.context import run_context  # the run: only when the command runs

    fields: dict[str, Any] = {
        "model": model,
        "input_current_text": input_current,
        "input_context_text": input_context,
        "output_context_text": output_context,
        "output_current_text": output_current,
        "input_template": input_template,
        "output_template": output_template,
        "contextless_input_current_text": contextless_input_current,
        "contextless_output_current_text": contextless_output_current,
        "context_sensitivity_metric": context_sensitivity_metric,
        "context_sensitivity_std_threshold": context_sensitivity_std_threshold,
        "context_sensitivity_topk": context_sensitivity_topk,
        "attribution_method": attribution_method,
        "attributed_fn": attributed_fn,
        "attribution_std_threshold": attribution_std_threshold,
        "attribution_topk": attribution_topk,
        "handle_output_context_strategy": handle_output_context_strategy,
        "method_args": _args(method_args or [], "--method-arg"),
    }
    body = {name: value for name, value in fields.items() if value not in (None, {})}
    if max_new_tokens is not None:
        body["generation_args"] = {"max_new_tokens": max_new_tokens}
    if save is not None and save.suffix.lower() not in (".json", ".txt"):
        raise typer.BadParameter(f"{str(save)!r}: save as .json or .txt", param_hint="--save")
    with reported():
        run_context(body, local=local, url=url, api_key=api_key, save=save, view=view)
