"""RFC 9457 problem details: the body of every error response (`application/problem+json`).

The models document the shape in OpenAPI; the bodies themselves come from `SeqattrError.to_problem()`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.exports import ExportFormat, export_content

PROBLEM_MEDIA_TYPE = "application/problem+json"
"""Media type of every error response."""


class Problem(BaseModel):
    """An error: `type` is a stable URI per kind of error; extension members add what helps."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="Stable URI identifying the kind of problem.")
    title: str
    status: int = Field(description="The HTTP status code.")
    detail: str
    instance: str | None = Field(None, description="The request path (or job) the problem is about.")


class ValidationErrorItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    loc: list[str | int] = Field(description="Where the error is, e.g. ['body', 'generation_args', 'top_p'].")
    msg: str
    type: str


class ValidationProblem(Problem):
    """A 422: one entry in `errors` per invalid location."""

    errors: list[ValidationErrorItem]


class UnknownModelProblem(Problem):
    """A 404 for an unknown model id: `available` lists the served ones."""

    available: list[str]


class JobStateProblem(Problem):
    """A 409 from `GET /v1/jobs/{id}/result`: the job's status and, if it failed, its error."""

    job_status: str
    error: dict[str, Any] | None = None


def problems_as_sent(document: dict[str, Any]) -> dict[str, Any]:
    """Declare each problem response's schema under `application/problem+json`, the media type it is sent as,
    and only there; in place.

    FastAPI documents a response `model` under the route's own media type (`application/json`, `text/html`,
    `image/png`...), which would tell clients that a 404 of an image is an image.
    """
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if content.get(PROBLEM_MEDIA_TYPE) != {}:
                    continue  # not from `problem_responses`, or already moved
                schemas = [entry for media, entry in content.items() if media != PROBLEM_MEDIA_TYPE]
                if len(schemas) == 1:
                    response["content"] = {PROBLEM_MEDIA_TYPE: schemas[0]}
    return document


def problem_responses(*statuses: int, **models: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, documented as problem+json.

    Args:
        *statuses: statuses documented with the plain `Problem` model.
        **models: `s404=UnknownModelProblem`-style overrides, keyed by 's' + status.
    """
    out: dict[int | str, dict[str, Any]] = {}
    chosen = {int(key[1:]): model for key, model in models.items()}
    for status in sorted({*statuses, *chosen}):
        model = chosen.get(status, Problem)
        out[status] = {"model": model, "content": {PROBLEM_MEDIA_TYPE: {}}}
    return out


class NotAcceptableProblem(Problem):
    """A 406: `Accept` names no media type a result is served as; `available` lists them."""

    available: list[str]


class ExportAlternative(BaseModel):
    """A smaller way to ask for the same result."""

    format: ExportFormat
    precision: int | None
    query: str = Field(description="The query string that asks for it, e.g. 'format=json&precision=3'.")
    estimated_bytes: int


class ExportTooLargeProblem(Problem):
    """A 413: the export would pass the size limit; `alternatives` are the smaller ways to get it."""

    format: str = Field(description="The format asked for, e.g. 'csv' or 'json with precision=3'.")
    estimated_bytes: int = Field(description="Its size, estimated unless the stored JSON was asked for.")
    max_bytes: int = Field(description="The limit (SEQATTR_MAX_EXPORT_BYTES).")
    alternatives: list[ExportAlternative] = Field(description="Formats under the limit, smallest first.")


def submit_responses(s422: str, s202: str) -> dict[int | str, dict[str, Any]]:
    """The responses of an endpoint that accepts work (a job, a batch): 202 described by `s202`, the problems
    of a submit, and a 422 described by `s422` (a validation error, or another invalid-request problem)."""
    return {
        **problem_responses(400, 401, 413, 429, 503, s404=UnknownModelProblem),
        422: _any_422(s422),
        202: {"description": s202},
    }


def _any_422(description: str) -> dict[str, Any]:
    return {
        "model": ValidationProblem | Problem,
        "content": {PROBLEM_MEDIA_TYPE: {}},
        "description": description,
    }


def export_responses(*statuses: int, s422: str, context: bool = False) -> dict[int | str, dict[str, Any]]:
    """The responses of an endpoint that answers a result in the export formats (`schemas.exports`): the
    formats, the problems `statuses`, 406, 409 and 413, and a 422 described by `s422`; `context` when
    context-attribution results are answered too."""
    return {
        200: export_content(context),
        **problem_responses(
            *statuses,
            s406=NotAcceptableProblem,
            s409=JobStateProblem,
            s413=ExportTooLargeProblem,
        ),
        422: _any_422(s422),
    }
