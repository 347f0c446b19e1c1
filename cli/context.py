"""`seqattr attribute-context`: validate the request here, run it on a service (or in this process with
`--local`), show the progress, print the text rendering in colour, and write the files asked for."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from cli import render
from cli.attribute import _write
from cli.client import ApiClient
from cli.errors import Interrupted, JobFailed, ProblemResponse
from cli.request import _message
from schemas.context import ContextAttributionRequest
from schemas.errors import RequestValidationFailed, SeqattrError, UnknownModelError

_MARKS = re.compile(
    r"\{(?P<cti>.+?)\}\((?P<cti_score>-?[0-9.]+(?:e-?\d+)?)\)|\[(?P<cue>.+?)\]\((?P<cue_score>-?[0-9.]+(?:e-?\d+)?)\)"
)
"""The text rendering's marks: `{token}(score)` a context-sensitive token, `[token](score)` a cue."""


_TEXT_FIELDS = {
    "input_context_text": "--input-context",
    "input_current_text": "--input-current",
    "output_context_text": "--output-context",
    "output_current_text": "--output-current",
    "input_template": "--input-template",
    "output_template": "--output-template",
    "contextless_input_current_text": "--contextless-input-current",
    "contextless_output_current_text": "--contextless-output-current",
}
"""Request field -> option, for the texts (an error names the option)."""


def _option(field: str) -> str:
    """The option that sets a request field (what an error names)."""
    special = {"method_args": "--method-arg", "generation_args": "--max-new-tokens"}
    return _TEXT_FIELDS.get(field) or special.get(field) or "--" + field.replace("_", "-")


def validated(body: dict[str, Any]) -> ContextAttributionRequest:
    """The request, validated by the shared schema (errors name the options).

    Raises:
        ProblemResponse: a 422 problem with one entry per invalid location, as the API lists them.
    """
    try:
        return ContextAttributionRequest.model_validate(body)
    except ValidationError as exc:
        errors = [
            {
                "loc": [_option(str(error["loc"][0])), *error["loc"][1:]] if error["loc"] else [],
                "msg": _message(error),
                "type": error["type"],
            }
            for error in exc.errors()
        ]
        raise ProblemResponse(RequestValidationFailed(errors).to_problem()) from None


def coloured(text: str) -> Text:
    """The text rendering with its marks in colour (context-sensitive tokens red, cues blue)."""
    out = Text()
    last = 0
    for match in _MARKS.finditer(text):
        out.append(text[last : match.start()])
        if match.group("cti") is not None:
            out.append(match.group("cti"), style="bold red")
            out.append(f"({match.group('cti_score')})", style="red")
        else:
            out.append(match.group("cue"), style="bold blue")
            out.append(f"({match.group('cue_score')})", style="blue")
        last = match.end()
    out.append(text[last:])
    return out


def _outputs(result: dict[str, Any], raw: bytes, save: Path | None, err: Console) -> None:
    render.stdout().print(coloured(str(result["text"])))
    if save is not None:
        text = save.suffix.lower() == ".txt"
        _write(save, str(result["text"]).encode() if text else raw)
        err.print(f"saved the result ({'text' if text else 'json'}) to {save}")


def run_context(
    body: dict[str, Any], *, local: bool, url: str, api_key: str | None, save: Path | None, view: Path | None
) -> None:
    """Run the request (on the API at `url`, or here with `local`), print it and write `save` and `view`."""
    request = validated(body)
    if local:
        _run_local(request, save, view)
        return
    err = render.stderr()
    job: dict[str, Any] | None = None
    with ApiClient(url, api_key) as client:
        try:
            job = client.submit(body, path="/v1/attribute-context")
            err.print(f"job [bold]{job['id']}[/] submitted to {client.url}")
            with render.JobProgress(err, f"job {job['id'][:8]}") as progress:
                client.wait(job["id"], progress.job)
            raw = client.result(job["id"])
            _outputs(orjson.loads(raw), raw, save, err)
            if view is not None:
                client.save_view(job["id"], view)
                err.print(f"saved the view to {view}")
        except KeyboardInterrupt:
            if job is None:
                raise Interrupted("interrupted before the job was submitted") from None
            raise Interrupted(
                f"interrupted; job {job['id']} keeps running (GET /v1/jobs/{job['id']})"
            ) from None


def _run_local(request: ContextAttributionRequest, save: Path | None, view: Path | None) -> None:
    from cli.local import LocalEngine  # torch and the engine: only for --local
    from workers.engine.context_attribution import run_context_attribution

    err = render.stderr()
    engine = LocalEngine()
    try:
        with err.status(f"loading {request.model}"):
            loaded = engine.load(request.model)
        with render.JobProgress(err, f"{request.model} (local)") as progress:
            result = run_context_attribution(
                request, loaded, progress.counts, "local", max_cost=engine.settings.max_job_cost
            )
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    except UnknownModelError as exc:  # what the API answers at submit time (404)
        raise ProblemResponse(exc.to_problem()) from None
    except SeqattrError as exc:  # what the job would have failed with
        raise JobFailed(exc.to_problem()) from None
    raw = orjson.dumps(result)
    shown = orjson.loads(raw)
    _outputs(shown, raw, save, err)
    if view is not None:
        from service.views.context_view import render_context_html  # the page GET /v1/jobs/{id}/view serves

        _write(view, render_context_html(shown, request.model_dump(mode="json")).encode())
        err.print(f"saved the view to {view}")
