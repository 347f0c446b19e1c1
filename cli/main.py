"""The `seqattr` command (Typer): run the service (`serve`, `api`, `worker`), attribute from the terminal
(`attribute`), read the catalogue (`methods`, `step-functions`), list jobs (`jobs`) and write the OpenAPI
document (`openapi`). Each command imports what it needs only when it runs, so `--help` stays quick.

Exit codes: 0 done, 1 a problem answer (e.g. an unknown model), 2 a usage or configuration error, 3 the API
unreachable, 4 an invalid request (422), 5 a failed job, 130 Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cli import render
from cli.attribute_command import attribute
from cli.common import DEFAULT_URL, ApiKey, Url, reported
from cli.context_command import attribute_context
from cli.dataset_command import attribute_dataset
from schemas.defaults import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
)
from schemas.jobs import JobStatus
from schemas.logs import configure_logging

logger = logging.getLogger("seqattr")

_SERVICE, _ATTRIBUTE, _CATALOGUE = "Run the service", "Use the service", "Catalogue (no service needed)"

app = typer.Typer(
    name="seqattr",
    help="Seqattr: feature attribution for sequence-generation models (the methods of Inseq), served over "
    "HTTP. Run the service with `seqattr serve`, then explain a generation with "
    "`seqattr attribute -i 'Hello world'`.",
    epilog="Exit codes: 0 done, 1 an error answer, 2 bad usage or configuration, 3 the API unreachable, "
    "4 an invalid request, 5 a failed job, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,  # locals may hold an API key
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _configure_logging() -> None:
    configure_logging(logging.INFO, "json" if os.environ.get("SEQATTR_LOG_FORMAT") == "json" else "text")


def _show_version(show: bool) -> None:
    if show:
        typer.echo(f"seqattr {version('seqattr')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """The root options."""


# -- run the service ---------------------------------------------------------------------------------------


@app.command(rich_help_panel=_SERVICE)
def serve() -> None:
    """Run everything on this machine until Ctrl-C or SIGTERM: the embedded Redis, the workers and the API
    (what `make serve` runs).

    Settings come from the environment: PORT, REDIS_URL (a Redis of your own instead of the embedded one),
    SEQATTR_WORKERS, SEQATTR_API_WORKERS, SEQATTR_MODELS, SEQATTR_API_KEYS...; see the README.
    """
    _configure_logging()
    from cli.serve import serve as run_serve
    from cli.settings import get_serve_settings

    try:
        settings = get_serve_settings()
    except ValidationError as exc:
        logger.error("invalid configuration: %s", exc)
        raise typer.Exit(2) from None
    raise typer.Exit(run_serve(settings))


@app.command(rich_help_panel=_SERVICE)
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar="PORT", min=1, max=65535, help="TCP port.")] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="API processes sharing the port.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
) -> None:
    """Run the HTTP API alone; Redis and the workers run elsewhere (REDIS_URL says where).

    Other settings come from the environment (SEQATTR_*); see the README.
    """
    _configure_logging()
    from cli.api_server import serve_api

    serve_api(host, port, workers, log_level, access_log)


@app.command(rich_help_panel=_SERVICE)
def worker(
    models: Annotated[
        str | None,
        typer.Option(help="Model ids to serve, comma-separated (sets SEQATTR_WORKER_MODELS); default: all."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N or mps (sets SEQATTR_DEVICE); default: cpu.")
    ] = None,
) -> None:
    """Run one worker: it takes the jobs of the models it serves from Redis (REDIS_URL) and keeps those
    models loaded (what `python -m workers` does).

    Other settings come from the environment (SEQATTR_PRELOAD, SEQATTR_TORCH_THREADS...); see the README.
    """
    for name, value in (("SEQATTR_WORKER_MODELS", models), ("SEQATTR_DEVICE", device)):
        if value is not None:
            os.environ[name] = value
    from workers.__main__ import main as worker_main

    raise typer.Exit(worker_main())


# -- use the service ---------------------------------------------------------------------------------------


app.command(rich_help_panel=_ATTRIBUTE)(attribute)
app.command("attribute-context", rich_help_panel=_ATTRIBUTE)(attribute_context)
app.command("attribute-dataset", rich_help_panel=_ATTRIBUTE)(attribute_dataset)


@app.command(rich_help_panel=_ATTRIBUTE)
def jobs(
    limit: Annotated[int, typer.Option(min=1, max=LIST_MAX_LIMIT, help="Jobs to list.")] = LIST_DEFAULT_LIMIT,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """List recent jobs, newest first (with an API key: that key's jobs)."""
    from cli.client import ApiClient

    with reported(), ApiClient(url, api_key) as client:
        page = client.jobs(limit, status)
    console = render.stdout()
    if not page["jobs"]:
        console.print("no jobs" + (f" with status {status}" if status else ""))
        return
    console.print(render.jobs_table(page, console.width))


@app.command(rich_help_panel=_ATTRIBUTE)
def openapi(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write it to this file instead of stdout."),
    ] = None,
) -> None:
    """Print the service's OpenAPI document (the contract; what openapi/openapi.json holds)."""
    from service.openapi import openapi_document
    from service.openapi import render as render_document

    text = render_document(openapi_document())
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    render.stderr().print(f"wrote {output}")


# -- catalogue ---------------------------------------------------------------------------------------------


@app.command(rich_help_panel=_CATALOGUE)
def methods(
    method_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="Show this method in detail, with its parameters.")
    ] = None,
) -> None:
    """List the attribution methods, or show one with its parameters and defaults."""
    from cli import catalogue
    from schemas.methods import METHOD_SPECS

    console = render.stdout()
    if method_id is None:
        console.print(catalogue.methods_table())
        return
    if method_id not in METHOD_SPECS:
        raise typer.BadParameter(
            f"unknown method {method_id!r}; available: {', '.join(METHOD_SPECS)}", param_hint="ID"
        )
    console.print(catalogue.method_detail(METHOD_SPECS[method_id]))


@app.command(rich_help_panel=_CATALOGUE)
def step_functions(
    function_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="Show this step function in detail.")
    ] = None,
) -> None:
    """List the step functions (attributed functions and step scores), or show one with its parameters."""
    from cli import catalogue
    from schemas.step_functions import STEP_FUNCTION_SPECS

    console = render.stdout()
    if function_id is None:
        console.print(catalogue.step_functions_table())
        return
    if function_id not in STEP_FUNCTION_SPECS:
        raise typer.BadParameter(
            f"unknown step function {function_id!r}; available: {', '.join(STEP_FUNCTION_SPECS)}",
            param_hint="ID",
        )
    console.print(catalogue.step_function_detail(STEP_FUNCTION_SPECS[function_id]))


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns its exit code (the console script and `python -m cli` exit with it)."""
    try:
        app(args=argv, prog_name="seqattr")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0
