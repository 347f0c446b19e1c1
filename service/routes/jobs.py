"""`/v1/jobs`: read, wait for, list, cancel and delete jobs; fetch results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from schemas.defaults import LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT
from schemas.jobs import Job, JobPage, JobStatus
from schemas.problems import (
    ValidationProblem,
    export_responses,
    problem_responses,
)
from service import job_operations
from service.deps import JobStoreDep, SettingsDep
from service.exports import ExportOptionsDep, context_export_response, export_response
from service.rate_limit import RateLimitedCallerDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[
    str, Path(description="The job id from `POST /v1/attributions` or `POST /v1/attribute-context`.")
]


@router.get(
    "",
    name="list_jobs",
    response_model=JobPage,
    summary="Recent jobs, newest first",
    responses=problem_responses(401, 429, 503, s422=ValidationProblem),
)
def list_jobs(
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX_LIMIT)] = LIST_DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
) -> JobPage:
    return job_operations.list_jobs(store, limit, cursor, status, caller)


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=Job,
    summary="A job's status and progress",
    responses=problem_responses(401, 429, 404, 410, 503, s422=ValidationProblem),
)
async def get_job(
    job_id: JobId,
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    settings: SettingsDep,
    wait: Annotated[
        float,
        Query(ge=0, description="Wait up to this many seconds (capped by the server) for a terminal status."),
    ] = 0,
) -> Job:
    if wait <= 0:
        return await run_in_threadpool(job_operations.get_job, store, job_id, caller)
    return await job_operations.wait_for_job(store, job_id, min(wait, settings.long_poll_max_s), caller)


@router.get(
    "/{job_id}/result",
    name="get_job_result",
    summary="A finished job's result, as JSON, CSV, the reference library's file or text",
    description="The format is `?format=`, else the best match of `Accept` (JSON for none or `*/*`). "
    "Results stream; `Accept-Encoding: gzip` compresses them. An attribution job's result is "
    "`AttributionResult` (json, csv, inseq); an attribute-context job's is `ContextAttributionResult` "
    "(json) or its text rendering (text).",
    response_class=Response,
    responses=export_responses(
        401,
        429,
        404,
        410,
        503,
        s422="Invalid parameters, a granular result asked for as CSV, or a format the job's kind has not "
        "(text for an attribution job; csv or inseq for a context-attribution job).",
        context=True,
    ),
)
def get_job_result(
    job_id: JobId,
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    settings: SettingsDep,
    export: ExportOptionsDep,
) -> Response:
    job, stored = job_operations.get_result(store, job_id, caller)
    if job.kind == "attribute-context":
        return context_export_response(stored, export.format, max_bytes=settings.max_export_bytes)
    return export_response(
        stored,
        export.format,
        max_bytes=settings.max_export_bytes,
        precision=export.precision,
        request=job.request,
    )


@router.delete(
    "/{job_id}",
    name="delete_job",
    status_code=202,
    response_model=Job,
    summary="Cancel a queued or running job, or delete an ended one",
    responses={
        202: {"description": "The job was queued or running and is now canceled."},
        204: {"description": "The job had ended; its record and result are deleted."},
        **problem_responses(401, 429, 404, 410, 503, s422=ValidationProblem),
    },
)
def delete_job(job_id: JobId, store: JobStoreDep, caller: RateLimitedCallerDep) -> Job | Response:
    job = job_operations.delete_job(store, job_id, caller)
    return job if job is not None else Response(status_code=204)
