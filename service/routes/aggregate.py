"""`POST /v1/jobs/{id}/aggregate`: re-aggregate a finished job's result without running the model again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from schemas.aggregation import AggregateRequest
from schemas.problems import export_responses
from service import reaggregation
from service.deps import JobStoreDep, SettingsDep
from service.exports import ExportOptionsDep, export_response
from service.rate_limit import RateLimitedCallerDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "/{job_id}/aggregate",
    name="aggregate_job_result",
    summary="A finished job's result aggregated another way, without the model",
    description="In the formats of `GET /v1/jobs/{id}/result` (`?format=`, `Accept`, `?precision=`).",
    response_class=Response,
    responses=export_responses(
        400,
        401,
        429,
        404,
        410,
        503,
        s422="An invalid chain, or one that does not fit the job's scores (`invalid-aggregation`).",
    ),
)
def aggregate_job_result(
    job_id: Annotated[str, Path(description="The job id from `POST /v1/attributions`.")],
    body: AggregateRequest,
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    settings: SettingsDep,
    export: ExportOptionsDep,
) -> Response:
    """Apply an aggregation chain (the reference library's `aggregate(...)` steps) to the scores the job kept.

    A chain that starts with `scores` starts from the unreduced scores, which the job keeps when its
    request set `aggregation.keep_granular` (methods without unit dimensions always keep them); otherwise a
    409 says so. Any other chain starts from the job's token-level scores, before its own
    `aggregation.steps`. `pair` subtracts another finished job's scores, taken through the same steps first.
    """
    job, result = reaggregation.aggregate_job(store, job_id, body, caller)
    return export_response(
        result,
        export.format,
        max_bytes=settings.max_export_bytes,
        precision=export.precision,
        request=job.request,
    )
