"""Problem details and the job-system errors: stable types, statuses and extension members."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.errors import (
    PROBLEM_BASE,
    BodyTooLargeError,
    HTTPProblem,
    JobFailedError,
    JobNotReadyError,
    RequestValidationFailed,
    SeqattrError,
    ServiceNotReadyError,
    UnknownJobError,
    UnknownModelError,
    WorkerLostError,
)
from schemas.jobs import Job, JobLinks
from schemas.problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    UnknownModelProblem,
    ValidationProblem,
    problem_responses,
)


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (UnknownJobError("abc"), 404, "unknown-job"),
        (JobNotReadyError("abc", "queued"), 409, "job-not-ready"),
        (JobFailedError("abc", "failed", None), 409, "job-failed"),
        (BodyTooLargeError(10), 413, "body-too-large"),
        (RequestValidationFailed([]), 422, "validation-error"),
        (ServiceNotReadyError("down", 5), 503, "not-ready"),
        (WorkerLostError(), 500, "worker-lost"),
        (HTTPProblem(418, "I'm a Teapot", "no coffee"), 418, "i-m-a-teapot"),
        (SeqattrError("boom"), 500, "internal-error"),
    ],
)
def test_problem_bodies(error: SeqattrError, status: int, slug: str) -> None:
    body = error.to_problem(instance="/v1/x")
    assert body["status"] == status == error.status
    assert body["type"] == PROBLEM_BASE + slug
    assert body["instance"] == "/v1/x"
    Problem.model_validate(body)


def test_extension_members() -> None:
    assert JobNotReadyError("abc", "started").to_problem()["job_status"] == "started"
    failed = JobFailedError("abc", "failed", {"type": "t"}).to_problem()
    assert failed["error"] == {"type": "t"} and failed["job_status"] == "failed"
    assert ServiceNotReadyError("down", 7).headers == {"Retry-After": "7"}
    UnknownModelProblem.model_validate(
        UnknownModelError("m", ["b", "a"]).to_problem(instance="/v1/attributions")
    )
    errors = [{"loc": ["body", "x"], "msg": "unknown field 'x'", "type": "extra_forbidden"}]
    body = RequestValidationFailed(errors).to_problem(instance="/v1/attributions")
    assert ValidationProblem.model_validate(body).errors[0].loc == ["body", "x"]
    assert body["detail"] == "1 validation error"


def test_problem_responses_document_problem_json() -> None:
    responses = problem_responses(404, 503, s422=ValidationProblem)
    assert list(responses) == [404, 422, 503]
    assert responses[422]["model"] is ValidationProblem and responses[404]["model"] is Problem
    assert all(PROBLEM_MEDIA_TYPE in entry["content"] for entry in responses.values())


def test_job_serialises_times_as_utc() -> None:
    job = Job(
        id="a" * 32,
        kind="attribution",
        status="queued",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        links=JobLinks(self="/v1/jobs/x", result="/v1/jobs/x/result"),
        request={},
    )
    data = job.model_dump(mode="json")
    assert data["created_at"] == "2026-01-02T03:04:05Z"
    assert data["progress"] == {"done": 0, "total": 0} and data["links"]["view"] is None
