"""`POST /v1/attributions`: submit a feature-attribution job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from schemas.attribution import AttributionRequest
from schemas.defaults import IDEMPOTENCY_KEY_MAX_LENGTH
from schemas.jobs import Job
from schemas.problems import UnknownModelProblem, ValidationProblem, problem_responses
from service import job_operations
from service.auth import CallerDep
from service.deps import JobStoreDep, RegistryDep

router = APIRouter(prefix="/v1/attributions", tags=["attributions"])


@router.post(
    "",
    name="create_attribution",
    status_code=202,
    response_model=Job,
    summary="Submit an attribution job",
    responses={
        **problem_responses(400, 401, 413, 503, s404=UnknownModelProblem, s422=ValidationProblem),
        202: {"description": "Accepted; poll the job at the `Location` header."},
    },
)
def create_attribution(
    body: AttributionRequest,
    caller: CallerDep,
    store: JobStoreDep,
    registry: RegistryDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
            description="Same key and body: the same job again. Same key, other body: 422.",
        ),
    ] = None,
) -> Job:
    job, replayed = job_operations.submit_attribution(store, registry, body, idempotency_key, caller)
    response.headers["Location"] = job.links.self
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return job
