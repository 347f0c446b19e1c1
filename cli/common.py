"""What the `seqattr` commands share: the options that say where the service is, and how a command's error
is printed and turned into its exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from cli import render
from cli.errors import EXIT_INTERRUPTED, CommandError, JobFailed, ProblemResponse
from schemas.defaults import DEFAULT_HOST, DEFAULT_MAX_NEW_TOKENS, DEFAULT_METHOD, DEFAULT_MODEL, DEFAULT_PORT

DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
"""Where `seqattr` finds the API unless `--url` or `SEQATTR_URL` says otherwise (`make serve`'s address)."""

Url = Annotated[
    str,
    typer.Option(envvar="SEQATTR_URL", help="Base URL of the Seqattr API.", rich_help_panel="Service"),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        envvar="SEQATTR_API_KEY",
        help="API key, sent as `Authorization: Bearer` (when the service has keys).",
        show_default=False,
        rich_help_panel="Service",
    ),
]

Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model id (GET /v1/models).", show_default=DEFAULT_MODEL),
]
Method = Annotated[
    str | None,
    typer.Option(
        "--method", "-a", help="Attribution method (`seqattr methods`).", show_default=DEFAULT_METHOD
    ),
]
MethodArgs = Annotated[
    list[str] | None,
    typer.Option(
        "--method-arg",
        metavar="NAME=VALUE",
        help="A method parameter (`seqattr methods ID` lists them); VALUE is read as JSON when it is "
        "(n_steps=8, abs=false, heads=[0,1]), else as a string. Repeat for several.",
    ),
]
MaxNewTokens = Annotated[
    int | None, typer.Option(min=1, help="Tokens to generate.", show_default=str(DEFAULT_MAX_NEW_TOKENS))
]
StepScores = Annotated[
    list[str] | None,
    typer.Option(help="Step scores to compute too (seqattr step-functions); repeat or comma-separate."),
]
Local = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Run the engine in this process, without Redis or the API (models from the registry and "
        "SEQATTR_MODELS, as a worker loads them).",
        rich_help_panel="Service",
    ),
]
"""The options the commands that run attributions share (`attribute`, `attribute-context`,
`attribute-dataset`)."""


@contextmanager
def reported() -> Iterator[None]:
    """Print a command's error readably and exit with its code; Ctrl-C exits 130 quietly."""
    try:
        yield
    except CommandError as exc:
        _report(exc)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _report(error: CommandError) -> NoReturn:
    console = render.stderr()
    if isinstance(error, ProblemResponse):
        render.print_problem(console, error.problem)
    elif isinstance(error, JobFailed):
        heading = f"job {error.job_id} {error.status}" if error.job_id else "attribution failed"
        render.print_problem(console, error.problem, heading=heading)
    elif error.exit_code == EXIT_INTERRUPTED:
        console.print(f"[yellow]{error}[/]")
    else:
        console.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(error.exit_code)
