"""The options of `seqattr attribute-dataset`; the run itself is `cli.dataset`, imported only when the
command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.attribute_command import _args
from cli.common import DEFAULT_URL, ApiKey, Url, reported
from cli.request import AttributeOptions, split_ids
from schemas.defaults import (
    BATCH_CHUNK_ITEMS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    MAX_INPUTS_PER_REQUEST,
)


def attribute_dataset(
    file: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="The items: a JSONL file, or CSV when its name ends in .csv."
        ),
    ],
    input_field: Annotated[str, typer.Option(help="The field (JSONL) or column (CSV) holding each input.")],
    out: Annotated[
        Path,
        typer.Option(dir_okay=False, help="Where the results go: .jsonl (one line per item) or .csv (long)."),
    ],
    generated_field: Annotated[
        str | None,
        typer.Option(
            help="The field holding each item's forced target (decoder-only: prompt + continuation)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model id (GET /v1/models).", show_default=DEFAULT_MODEL),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method", "-a", help="Attribution method (`seqattr methods`).", show_default=DEFAULT_METHOD
        ),
    ] = None,
    method_args: Annotated[
        list[str] | None,
        typer.Option(
            "--method-arg",
            metavar="NAME=VALUE",
            help="A method parameter, read as in `seqattr attribute`. Repeat for several.",
        ),
    ] = None,
    step_scores: Annotated[
        list[str] | None,
        typer.Option(help="Step scores to compute too; repeat or comma-separate."),
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Tokens to generate.", show_default=str(DEFAULT_MAX_NEW_TOKENS)),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_INPUTS_PER_REQUEST,
            help="Items per chunk job (with --local: per engine run).",
            show_default=str(BATCH_CHUNK_ITEMS),
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Run the engine in this process, chunk by chunk, without Redis or the API.",
            rich_help_panel="Service",
        ),
    ] = False,
) -> None:
    """Attribute every item of a dataset file as a batch: the service spreads its chunks over every worker;
    a progress bar follows the items, and the results are written to --out when the batch ends.

    Ctrl-C leaves the batch running and prints its id. Items that failed have their problem in their line
    (exit code 5).
    """
    from cli.dataset import DatasetJob, out_format, run_local, run_remote

    try:
        out_format(out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from None
    options = AttributeOptions(
        inputs=["(each item)"],
        model=model,
        method=method,
        step_scores=split_ids(step_scores or []),
        method_args=_args(method_args or [], "--method-arg"),
        max_new_tokens=max_new_tokens,
    )
    job = DatasetJob(file, input_field, generated_field, options, out, chunk_size)
    with reported():
        if local:
            run_local(job)
        else:
            run_remote(job, url, api_key)
