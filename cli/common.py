"""What the `seqattr` commands share: the options that say where the service is, and how a command's error
is printed and turned into its exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from cli import render
from cli.errors import EXIT_INTERRUPTED, CommandError, JobFailed, ProblemResponse
from schemas.defaults import DEFAULT_HOST, DEFAULT_PORT

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
