"""`/v1/jobs/{id}/view` and `/v1/jobs/{id}/heatmap.png|svg`: a finished job's result for people to look at."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from schemas.defaults import MAX_INPUTS_PER_REQUEST
from schemas.problems import (
    ExportTooLargeProblem,
    JobStateProblem,
    Problem,
    ValidationProblem,
    problem_responses,
)
from service.deps import JobStoreDep, SettingsDep
from service.job_store import JobStore
from service.rate_limit import RateLimitedCallerDep
from service.views.heatmap_image import ImageFormat
from service.views.html_view import CONTENT_SECURITY_POLICY
from service.views.job_views import job_image, job_page

router = APIRouter(prefix="/v1/jobs", tags=["views"])

JobId = Annotated[str, Path(description="The job id from `POST /v1/attributions`.")]
SequenceIndex = Annotated[
    int, Query(ge=0, le=MAX_INPUTS_PER_REQUEST - 1, description="Which input's heatmap (0-based).")
]

IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'"
"""An SVG opened on its own may style itself and do nothing else."""

IMAGE_MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


_S422 = (
    "An invalid `sequence`, or one past the result's sequences (the problem's `sequences` is their count)."
)


def _responses(media_type: str, schema: dict[str, str], description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description, "content": {media_type: {"schema": schema}}},
        **problem_responses(401, 429, 404, 410, 503, s409=JobStateProblem, s413=ExportTooLargeProblem),
        422: {
            "model": ValidationProblem | Problem,
            "content": {"application/problem+json": {}},
            "description": _S422,
        },
    }


@router.get(
    "/{job_id}/view",
    name="get_job_view",
    summary="A finished job's result as a self-contained HTML heatmap page",
    description="Per input: source and target tokens (rows) against the generated tokens (columns), the "
    "score on hover, step scores as rows under the columns, the generated text; contrastive results mark the "
    "steps whose contrast token differs. The page loads nothing (inline CSS and JS only). Granular results "
    "show the L2 norm of each cell.",
    response_class=Response,
    responses={
        200: {
            "description": "The page.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 429, 404, 410, 503, s409=JobStateProblem, s413=ExportTooLargeProblem),
        422: {"model": ValidationProblem, "content": {"application/problem+json": {}}},
    },
)
def get_job_view(
    job_id: JobId, store: JobStoreDep, caller: RateLimitedCallerDep, settings: SettingsDep
) -> HTMLResponse:
    page = job_page(store, job_id, caller, settings.max_export_bytes)
    return HTMLResponse(
        page,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"},
    )


def _image(
    store: JobStore, job_id: str, caller: str | None, sequence: int, fmt: ImageFormat, max_bytes: int
) -> Response:
    data = job_image(store, job_id, caller, sequence, fmt, max_bytes)
    headers = {
        "Content-Disposition": f'inline; filename="{job_id}-{sequence}.{fmt}"',
        "X-Content-Type-Options": "nosniff",
    }
    if fmt == "svg":
        headers["Content-Security-Policy"] = IMAGE_CSP
    return Response(data, media_type=IMAGE_MEDIA_TYPES[fmt], headers=headers)


@router.get(
    "/{job_id}/heatmap.png",
    name="get_job_heatmap_png",
    summary="One input's heatmap as a PNG image",
    description="Tokens on both axes, a colour bar, step scores as a strip below (each on its own scale).",
    response_class=Response,
    responses=_responses("image/png", {"type": "string", "format": "binary"}, "The PNG image."),
)
def get_job_heatmap_png(
    job_id: JobId,
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    settings: SettingsDep,
    sequence: SequenceIndex = 0,
) -> Response:
    return _image(store, job_id, caller, sequence, "png", settings.max_export_bytes)


@router.get(
    "/{job_id}/heatmap.svg",
    name="get_job_heatmap_svg",
    summary="One input's heatmap as an SVG image",
    description="As `heatmap.png`, as SVG with the tokens as text.",
    response_class=Response,
    responses=_responses("image/svg+xml", {"type": "string"}, "The SVG document."),
)
def get_job_heatmap_svg(
    job_id: JobId,
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    settings: SettingsDep,
    sequence: SequenceIndex = 0,
) -> Response:
    return _image(store, job_id, caller, sequence, "svg", settings.max_export_bytes)
