"""`seqattr attribute`: validate the request here, run it on a service (or in this process with `--local`),
show the progress and the token table, and write the export and the HTML view that were asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cli import render, tables
from cli.client import ApiClient
from cli.errors import Interrupted, JobFailed, ProblemResponse
from cli.request import AttributeOptions, validated
from schemas.attribution import AttributionRequest
from schemas.errors import SeqattrError, UnknownModelError
from schemas.exports import ExportFormat

_SUFFIX_FORMATS = {".json": ExportFormat.JSON, ".csv": ExportFormat.CSV}
"""Export format inferred from `--save`'s file name (the inseq file is a .json too: ask for it by name)."""


def save_format(path: Path | None, fmt: ExportFormat | None) -> ExportFormat | None:
    """The format `--save` writes: `--format`, else the file's extension.

    Raises:
        ValueError: no `--format` and an extension that names none.
    """
    if path is None or fmt is not None:
        return fmt
    inferred = _SUFFIX_FORMATS.get(path.suffix.lower())
    if inferred is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its extension; add --format json|csv|inseq"
        )
    return inferred


@dataclass(frozen=True)
class Outputs:
    """Where the result goes besides the terminal."""

    save: Path | None = None
    fmt: ExportFormat = ExportFormat.JSON
    view: Path | None = None
    table: bool = True


def _checked(options: AttributeOptions) -> AttributionRequest:
    try:
        return validated(options)
    except SeqattrError as exc:
        raise ProblemResponse(exc.to_problem()) from None


def run_remote(
    options: AttributeOptions, outputs: Outputs, url: str, api_key: str | None, idempotency_key: str | None
) -> None:
    """Submit to the API at `url`, follow the job, then show and write its result."""
    _checked(options)
    out, err = render.stdout(), render.stderr()
    job: dict[str, Any] | None = None
    with ApiClient(url, api_key) as client:
        try:
            job = client.submit(options.body(), idempotency_key)
            err.print(f"job [bold]{job['id']}[/] submitted to {client.url}")
            with render.JobProgress(err, f"job {job['id'][:8]}") as progress:
                client.wait(job["id"], progress.job)
            save_json = outputs.save is not None and outputs.fmt is ExportFormat.JSON
            data = client.result(job["id"]) if outputs.table or save_json else b""
            if outputs.table:
                tables.print_result(out, orjson.loads(data))
            if outputs.save is not None:
                if save_json:  # the bytes just fetched: no second download
                    _write(outputs.save, data)
                else:
                    client.save_result(job["id"], outputs.fmt, outputs.save)
                err.print(f"saved the result ({outputs.fmt.value}) to {outputs.save}")
            if outputs.view is not None:
                client.save_view(job["id"], outputs.view)
                err.print(f"saved the view to {outputs.view}")
        except KeyboardInterrupt:
            if job is None:
                raise Interrupted("interrupted before the job was submitted") from None
            raise Interrupted(
                f"interrupted; job {job['id']} keeps running (seqattr jobs, or GET /v1/jobs/{job['id']})"
            ) from None


def run_local_mode(options: AttributeOptions, outputs: Outputs) -> None:
    """Attribute in this process (the engine, no Redis, no API), then show and write the result."""
    request = _checked(options)
    from cli.local import LocalEngine, as_dict, export_bytes  # torch and the engine: only for --local

    out, err = render.stdout(), render.stderr()
    engine = LocalEngine()
    try:
        with err.status(f"loading {request.model}"):
            loaded = engine.load(request.model)
        with render.JobProgress(err, f"{request.model} (local)") as progress:
            result = engine.attribute(request, loaded, progress.counts)
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    except UnknownModelError as exc:  # what the API answers at submit time (404)
        raise ProblemResponse(exc.to_problem()) from None
    except SeqattrError as exc:  # what the job would have failed with
        raise JobFailed(exc.to_problem()) from None
    shown = as_dict(result)
    if outputs.table:
        tables.print_result(out, shown)
    if outputs.save is not None:
        _write(outputs.save, export_bytes(result, request, outputs.fmt))
        err.print(f"saved the result ({outputs.fmt.value}) to {outputs.save}")
    if outputs.view is not None:
        from service.views.html_view import render_html  # the page GET /v1/jobs/{id}/view serves

        _write(outputs.view, render_html(shown).encode())
        err.print(f"saved the view to {outputs.view}")


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole: a partial file never takes the name."""
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
