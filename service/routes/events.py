"""`GET /v1/jobs/{id}/events` and `GET /v1/batches/{id}/events`: a job's or a batch's status and progress,
pushed as Server-Sent Events."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from schemas.problems import ValidationProblem, problem_responses
from service import events
from service.deps import JobStoreDep
from service.rate_limit import RateLimitedCallerDep
from service.routes.batches import BatchId
from service.routes.jobs import JobId

router = APIRouter()

EVENT_STREAM = "text/event-stream"


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""No proxy may buffer or cache an event stream."""


@router.get(
    "/v1/jobs/{job_id}/events",
    name="get_job_events",
    tags=["jobs"],
    response_class=StreamingResponse,
    summary="A job's status and progress as Server-Sent Events, until it ends",
    description="Each event (`event: status` when the status changed, else `event: progress`; an `id:`) "
    "carries the job record as its `data:`, as `GET /v1/jobs/{id}` returns it. The first event is the job "
    "as it is now; one follows every progress step a worker writes; the stream ends after the terminal "
    "status. A comment line keeps a quiet stream alive every 15 s.",
    responses={
        200: {
            "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
            "description": "The event stream.",
        },
        **problem_responses(401, 429, 404, 410, 503, s422=ValidationProblem),
    },
)
async def get_job_events(
    job_id: JobId, request: Request, store: JobStoreDep, caller: RateLimitedCallerDep
) -> StreamingResponse:
    stream = await events.open_job_events(store, getattr(request.app.state, "events", None), job_id, caller)
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=STREAM_HEADERS)


@router.get(
    "/v1/batches/{batch_id}/events",
    name="get_batch_events",
    tags=["batches"],
    response_class=StreamingResponse,
    summary="A batch's status and progress as Server-Sent Events, until it ends",
    description="As `GET /v1/jobs/{id}/events`, with the batch record (`GET /v1/batches/{id}`) as each "
    "event's `data:`: an event when its status, its done items or its counts change (read every second), "
    "until it is finished or canceled.",
    responses={
        200: {
            "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
            "description": "The event stream.",
        },
        **problem_responses(401, 429, 404, 503, s422=ValidationProblem),
    },
)
async def get_batch_events(
    batch_id: BatchId, store: JobStoreDep, caller: RateLimitedCallerDep
) -> StreamingResponse:
    stream = await events.open_batch_events(store, batch_id, caller)
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=STREAM_HEADERS)
