"""`POST /v1/attributions`: submit a feature-attribution job."""

from __future__ import annotations

from fastapi import APIRouter, Response

from schemas.attribution import AttributionRequest
from schemas.jobs import Job
from schemas.problems import (
    submit_responses,
)
from service import job_operations
from service.callbacks import check_submitted_callback
from service.deps import IdempotencyKeyHeader, JobStoreDep, RegistryDep, SettingsDep
from service.rate_limit import RateLimitedCallerDep

router = APIRouter(prefix="/v1/attributions", tags=["attributions"])


@router.post(
    "",
    name="create_attribution",
    status_code=202,
    response_model=Job,
    summary="Submit an attribution job",
    responses=submit_responses(
        s422="An invalid body (`errors` lists each location), or an `Idempotency-Key` already "
        "used with another body.",
        s202="Accepted; poll the job at the `Location` header.",
    ),
)
async def create_attribution(
    body: AttributionRequest,
    caller: RateLimitedCallerDep,
    store: JobStoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    # Called on the event loop: a submit is a few sub-millisecond Redis round trips, and a worker-thread
    # hand-off per request cost a third of the throughput (1,070 -> 1,430 submits/s, make load's wrk note).
    check_submitted_callback(body.callback_url, settings)
    job, replayed = job_operations.submit_job(
        store, registry, body, idempotency_key, caller, max_queued=settings.max_queued_jobs
    )
    return job_operations.accepted(job, replayed)
