"""`POST /v1/attribute-context`: submit a context-attribution (PECoRe) job.

The job goes through the same submit path as an attribution job (limits, API keys, rate limit, idempotency,
queue-full), on its model's queue; `GET /v1/jobs/{id}` then reports it with `kind: "attribute-context"`.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from schemas.context import ContextAttributionRequest
from schemas.jobs import Job
from schemas.problems import (
    submit_responses,
)
from service import job_operations
from service.callbacks import check_submitted_callback
from service.deps import IdempotencyKeyHeader, JobStoreDep, RegistryDep, SettingsDep
from service.rate_limit import RateLimitedCallerDep

router = APIRouter(prefix="/v1/attribute-context", tags=["jobs"])


@router.post(
    "",
    name="create_context_attribution",
    status_code=202,
    response_model=Job,
    summary="Submit a context-attribution (PECoRe) job",
    description="Finds the generated tokens whose prediction depends on the context (CTI, a contrastive "
    "step function with and without the context), then attributes each of them to the context tokens (CCI). "
    "Poll the job at `Location`; its result is JSON (`ContextAttributionResult`) or `?format=text`.",
    responses=submit_responses(
        s422="An invalid body (`errors` lists each location: a non-contrastive metric, an "
        "unknown method, a template without `{current}`, the `manual` strategy...), or an "
        "`Idempotency-Key` already used with another body.",
        s202="Accepted; poll the job at the `Location` header.",
    ),
)
async def create_context_attribution(
    body: ContextAttributionRequest,
    caller: RateLimitedCallerDep,
    store: JobStoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    check_submitted_callback(body.callback_url, settings)
    job, replayed = job_operations.submit_job(
        store, registry, body, idempotency_key, caller, max_queued=settings.max_queued_jobs
    )
    return job_operations.accepted(job, replayed)
