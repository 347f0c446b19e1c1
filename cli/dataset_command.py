"""The options of `seqattr attribute-dataset`; the run itself is `cli.dataset`, imported only when the
command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.attribute_command import _args
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
from cli.request import AttributeOptions, split_ids
from schemas.defaults import (
    BATCH_CHUNK_ITEMS,
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
    model: Model = None,
    method: Method = None,
    method_args: MethodArgs = None,
    step_scores: StepScores = None,
    max_new_tokens: MaxNewTokens = None,
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
    local: Local = False,
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
