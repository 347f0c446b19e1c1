"""The options of `seqattr attribute` and their parsing; the run itself is `cli.attribute`, imported only
when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    DEFAULT_URL,
    ApiKey,
    Local,
    MaxNewTokens,
    Method,
    MethodArgs,
    Model,
    StepScores,
    Url,
    reported,
)
from cli.request import AttributeOptions, parse_arg, parse_step_score_arg, split_ids
from schemas.defaults import DEFAULT_ATTRIBUTED_FN
from schemas.exports import ExportFormat


def attribute(
    inputs: Annotated[
        list[str],
        typer.Option("--input", "-i", help="Text to generate from and explain; repeat for several."),
    ],
    model: Model = None,
    method: Method = None,
    generated_texts: Annotated[
        list[str] | None,
        typer.Option(
            "--generated-text",
            help="Forced target, one per --input, instead of generating (decoder-only models: the prompt "
            "followed by the continuation).",
        ),
    ] = None,
    step_scores: StepScores = None,
    attributed_fn: Annotated[
        str | None,
        typer.Option(
            help="Step function to attribute (`seqattr step-functions`).", show_default=DEFAULT_ATTRIBUTED_FN
        ),
    ] = None,
    method_args: MethodArgs = None,
    attributed_fn_args: Annotated[
        list[str] | None,
        typer.Option(
            "--attributed-fn-arg",
            metavar="NAME=VALUE",
            help="A parameter of the attributed function (`seqattr step-functions ID`); read as "
            "--method-arg.",
        ),
    ] = None,
    step_score_args: Annotated[
        list[str] | None,
        typer.Option(
            "--step-score-arg",
            metavar="ID.NAME=VALUE",
            help="A parameter of a step score, e.g. top_p_size.top_p=0.9; VALUE read as --method-arg.",
        ),
    ] = None,
    contrast_targets: Annotated[
        list[str] | None,
        typer.Option(
            "--contrast-target",
            help="Contrastive target, one per --input, for contrastive step functions (decoder-only models: "
            "the full text, prompt included).",
        ),
    ] = None,
    max_new_tokens: MaxNewTokens = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Sent as Idempotency-Key: running the command again with the same key and request gives the "
            "same job instead of a new one.",
            rich_help_panel="Service",
        ),
    ] = None,
    local: Local = False,
    save: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Write the result to this file, in the format of its extension (.json, .csv) or --format.",
            rich_help_panel="Output",
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            help="Format of --save: json (the result), csv (one row per score) or inseq (the file "
            "inseq.FeatureAttributionOutput.load reads).",
            rich_help_panel="Output",
        ),
    ] = None,
    view: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="Write the HTML heatmap page to this file.", rich_help_panel="Output"
        ),
    ] = None,
    table: Annotated[
        bool, typer.Option(help="Print the token table in the terminal.", rich_help_panel="Output")
    ] = True,
) -> None:
    """Explain a generation: submit an attribution to the service, follow its progress, print the tokens'
    scores as a coloured table and save the result.

    Rows are the tokens that mattered (source, then target), columns the generated tokens they explain;
    step scores are rows under the columns. The request is checked here first, with the service's own
    rules.
    """
    from cli.attribute import Outputs, run_local_mode, run_remote, save_format

    try:
        save_as = save_format(save, fmt)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--save") from None
    if fmt is not None and save is None:
        raise typer.BadParameter("--format says how to --save: give --save FILE too", param_hint="--format")
    options = AttributeOptions(
        inputs=inputs,
        model=model,
        method=method,
        generated_texts=generated_texts or [],
        step_scores=split_ids(step_scores or []),
        step_scores_args=_step_score_args(step_score_args or []),
        attributed_fn=attributed_fn,
        attributed_fn_args=_args(attributed_fn_args or [], "--attributed-fn-arg"),
        contrast_targets=contrast_targets or [],
        method_args=_args(method_args or [], "--method-arg"),
        max_new_tokens=max_new_tokens,
    )
    outputs = Outputs(save=save, fmt=save_as or ExportFormat.JSON, view=view, table=table)
    with reported():
        if local:
            run_local_mode(options, outputs)
        else:
            run_remote(options, outputs, url, api_key, idempotency_key)


def _args(texts: list[str], option: str) -> dict[str, Any]:
    try:
        return dict(parse_arg(text) for text in texts)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _step_score_args(texts: list[str]) -> dict[str, dict[str, Any]]:
    args: dict[str, dict[str, Any]] = {}
    try:
        for text in texts:
            score, name, value = parse_step_score_arg(text)
            args.setdefault(score, {})[name] = value
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--step-score-arg") from None
    return args
