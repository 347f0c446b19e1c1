"""What the job endpoints do: submit, read, wait for, list, cancel and delete jobs, and fetch results.

Routes call these plain functions; they raise `SeqattrError`s that the handlers turn into problem+json.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from schemas.attribution import AttributionRequest
from schemas.context import ContextAttributionRequest
from schemas.defaults import (
    IDEMPOTENCY_IN_FLIGHT_S,
    IDEMPOTENCY_POLL_S,
    LIST_MAX_SCAN,
    LONG_POLL_INTERVAL_S,
    LONG_POLL_SETTLE_S,
    QUEUE_FULL_RETRY_AFTER_S,
)
from schemas.errors import (
    IdempotencyKeyReusedError,
    InvalidRequestError,
    JobExpiredError,
    JobFailedError,
    JobNotReadyError,
    QueueFullError,
    RequestValidationFailed,
    UnknownJobError,
    UnknownModelError,
    WorkerLostError,
)
from schemas.jobs import TERMINAL_STATUSES, Job, JobKind, JobLinks, JobPage, JobStatus, Progress
from schemas.models import ModelEntry
from service.job_store import IndexEntry, JobStore, StoredResult

logger = logging.getLogger("seqattr.jobs")

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
"""Job ids are uuid4 hex; anything else cannot be a job of ours."""

_RQ_STATUS = {
    "created": "queued",
    "queued": "queued",
    "deferred": "queued",
    "scheduled": "queued",
    "started": "started",
    "finished": "finished",
    "failed": "failed",
    "stopped": "canceled",
    "canceled": "canceled",
}


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _rq_status(job: RQJob) -> str:
    status = job.get_status(refresh=False)
    return status.value if isinstance(status, RQJobStatus) else str(status or "queued")


def _status(job: RQJob, cancel_requested: bool) -> JobStatus:
    status = _RQ_STATUS.get(_rq_status(job), "queued")
    # A running job asked to stop ends as failed in RQ (the worker aborts it); report what the client asked.
    if cancel_requested and status in ("started", "failed"):
        return "canceled"
    return status  # type: ignore[return-value]


def job_record(job: RQJob, cancel_requested: bool, position: int | None = None) -> Job:
    """The API's job record (`schemas.jobs.Job`) of an RQ job and its meta."""
    status = _status(job, cancel_requested)
    meta = job.meta or {}
    error = meta.get("error")
    if status == "failed" and error is None:
        # No problem stored by the job function: RQ failed it because its worker vanished.
        error = WorkerLostError().to_problem()
    if error is not None:
        error = {**error, "instance": job_path(job.id)}
    return Job(
        id=job.id,
        kind=meta.get("kind", "attribution"),
        status=status,
        created_at=_utc(job.created_at),
        started_at=_utc(job.started_at),
        # A job failed for a lost worker has no end time: its last heartbeat is when it was last alive.
        ended_at=_utc(job.ended_at or job.last_heartbeat) if status in TERMINAL_STATUSES else None,
        progress=Progress(**meta.get("progress", {})),
        attempts=meta.get("attempts", 0),
        position=position if status == "queued" else None,
        error=error,
        links=JobLinks(
            self=job_path(job.id),
            result=job_path(job.id) + "/result",
            view=job_path(job.id) + "/view" if status == "finished" else None,
        ),
        request=(job.kwargs or {}).get("request", {}),
    )


def _fetch(store: JobStore, job_id: str, owner: str | None) -> RQJob:
    """The job if `owner` created it; another key's job is as unknown as a job that never existed."""
    job = store.fetch(job_id) if JOB_ID_PATTERN.fullmatch(job_id) else None
    if job is not None and (job.meta or {}).get("owner") != owner:
        raise UnknownJobError(job_id)
    if job is None:
        if JOB_ID_PATTERN.fullmatch(job_id) and store.has_tombstone(job_id, owner):
            raise JobExpiredError(job_id)
        raise UnknownJobError(job_id)
    if job.get_status(refresh=False) == "started":
        store.reap_abandoned(job.origin)
        job = store.fetch(job_id)
        if job is None:
            raise JobExpiredError(job_id)
    return job


def _record(store: JobStore, job: RQJob) -> Job:
    [cancel_requested] = store.cancel_requested([job.id])
    position = store.position(job) if job.get_status(refresh=False) == "queued" else None
    return job_record(job, cancel_requested, position)


def get_job(store: JobStore, job_id: str, owner: str | None = None) -> Job:
    """The job, or UnknownJobError (404) / JobExpiredError (410)."""
    return _record(store, _fetch(store, job_id, owner))


async def wait_for_job(store: JobStore, job_id: str, wait_s: float, owner: str | None = None) -> Job:
    """The job once it reaches a terminal status, or as it is after `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    announced = False
    async with store.job_end_signal(job_id) as wait:  # subscribed before the first read: no end is missed
        while True:
            job = await run_in_threadpool(get_job, store, job_id, owner)
            remaining = deadline - time.monotonic()
            if job.status in TERMINAL_STATUSES or remaining <= 0:
                return job
            # Once the worker has announced the end, RQ records it within milliseconds: re-read soon.
            interval = LONG_POLL_SETTLE_S if announced else LONG_POLL_INTERVAL_S
            announced = await wait(min(interval, remaining)) or announced


def request_hash(payload: dict[str, Any]) -> str:
    """A stable hash of a validated request (defaults filled, keys sorted)."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def submit_job(
    store: JobStore,
    registry: dict[str, ModelEntry],
    request: AttributionRequest | ContextAttributionRequest,
    idempotency_key: str | None = None,
    owner: str | None = None,
    max_queued: int | None = None,
) -> tuple[Job, bool]:
    """Enqueue a job of any kind on its model's queue, visible to `owner` (an API key's name) only.

    The kind follows the request's type: an `AttributionRequest` is an attribution job, a
    `ContextAttributionRequest` an attribute-context job.

    Returns:
        The new job (or the one an earlier request with the same Idempotency-Key created) and whether
        it is such an earlier job.
    """
    if request.model not in registry or request.model not in store.model_ids:
        raise UnknownModelError(request.model, list(registry))
    kind: JobKind
    if isinstance(request, ContextAttributionRequest):
        kind, method = "attribute-context", request.attribution_method
    else:
        kind, method = "attribution", request.method
    payload = request.model_dump(mode="json")
    job_id = uuid.uuid4().hex
    if idempotency_key is not None:  # a replay answers with the earlier job, however full the queue is
        # The kind is part of what the key binds: the same key on the other endpoint is another body.
        earlier = _claim(store, idempotency_key, owner, request_hash({"kind": kind, **payload}), job_id)
        if earlier is not None:
            return earlier, True
    try:
        waiting = store.queue_length(request.model)
        if max_queued is not None and waiting >= max_queued:
            raise QueueFullError(request.model, max_queued, QUEUE_FULL_RETRY_AFTER_S)
        job = store.enqueue(job_id, request.model, kind, payload, owner)
    except Exception:
        if idempotency_key is not None:
            store.release_idempotency_key(idempotency_key, owner)
        raise
    logger.info(
        "job %s queued: %s %s on %s by %s",
        job_id,
        kind,
        method,
        request.model,
        owner or "anonymous",
        extra={
            "job_id": job_id,
            "model": request.model,
            "method": method,
            "key": owner,
            "status": "queued",
        },
    )
    # A new job: not canceled, and behind the jobs that were waiting (no further round trip to Redis).
    return job_record(job, cancel_requested=False, position=waiting), False


def accepted(job: Job, replayed: bool) -> Response:
    """The 202 of a submit: the job, its `Location`, and `Idempotent-Replayed` for an earlier job."""
    headers = {"Location": job.links.self}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    # Serialised once, by pydantic-core; FastAPI's response_model pass would validate the record again.
    return Response(job.model_dump_json(), status_code=202, media_type="application/json", headers=headers)


def _claim(store: JobStore, key: str, owner: str | None, body_hash: str, job_id: str) -> Job | None:
    """Bind an Idempotency-Key to `job_id`; returns the earlier job if the key already names a live one."""
    for _ in range(2):
        existing = store.claim_idempotency_key(key, owner, body_hash, job_id)
        if existing is None:
            return None
        existing_id, existing_hash, claimed_at = existing
        if existing_hash != body_hash:
            raise IdempotencyKeyReusedError(key, existing_id)
        in_flight_until = claimed_at + IDEMPOTENCY_IN_FLIGHT_S
        while True:
            try:
                return get_job(store, existing_id, owner)
            except JobExpiredError:
                break
            except UnknownJobError:
                # Claimed a moment ago: the request that claimed it is enqueueing its job right now.
                if time.time() >= in_flight_until:
                    break
                time.sleep(IDEMPOTENCY_POLL_S)
        # The earlier job was deleted or has expired: the key is free for a new one.
        store.release_idempotency_key(key, owner)
    return None


def get_result(store: JobStore, job_id: str, owner: str | None = None) -> tuple[Job, StoredResult]:
    """A finished job and a reader of its stored result (nothing read yet but its size); 409 while it runs
    or when it failed."""
    job = finished_job(store, job_id, owner, kinds=None)
    stored = store.stored_result(job_id)
    if stored is None:
        raise JobExpiredError(job_id)
    return job, stored


def delete_job(store: JobStore, job_id: str, owner: str | None = None) -> Job | None:
    """Cancel a queued or running job (returns it, now canceled) or delete an ended one (returns None)."""
    job = _fetch(store, job_id, owner)
    record = _record(store, job)
    # A running job asked to stop reads `canceled` at once, but its worker is still at it: only once RQ has
    # recorded its end may the record and the result be deleted (or the job would come back, finished).
    still_running = job.get_status(refresh=False) == "started"
    if record.status in TERMINAL_STATUSES and not still_running:
        store.delete(job)
        return None
    store.cancel(job)
    return get_job(store, job_id, owner)


def encode_cursor(entry: IndexEntry) -> str:
    return base64.urlsafe_b64encode(f"{entry.score!r}|{entry.job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> IndexEntry:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, job_id = raw.split("|", 1)
        return IndexEntry(job_id, float(score))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RequestValidationFailed(
            [
                {
                    "loc": ["query", "cursor"],
                    "msg": "not a cursor returned by this endpoint",
                    "type": "value_error",
                }
            ]
        ) from None


def list_jobs(
    store: JobStore,
    limit: int,
    cursor: str | None = None,
    status: JobStatus | None = None,
    owner: str | None = None,
) -> JobPage:
    """`owner`'s jobs newest first; at most `LIST_MAX_SCAN` index entries are read per page when filtering."""
    after = decode_cursor(cursor) if cursor else None
    batch_size = limit if status is None else max(limit, 50)
    found: list[Job] = []
    scanned = 0
    more = True
    while more and len(found) < limit and scanned < LIST_MAX_SCAN:
        entries = store.index_page(owner, after, batch_size)
        more = len(entries) == batch_size
        jobs = _fetch_for_listing(store, owner, [e.job_id for e in entries])
        for i, (entry, job) in enumerate(zip(entries, jobs, strict=True)):
            after, scanned = entry, scanned + 1
            if job is not None and (status is None or job.status == status):
                found.append(job)
            if len(found) == limit:
                more = more or i < len(entries) - 1
                break
    next_cursor = encode_cursor(after) if more and after is not None else None
    return JobPage(jobs=found, next_cursor=next_cursor)


def _fetch_for_listing(store: JobStore, owner: str | None, job_ids: list[str]) -> list[Job | None]:
    jobs = store.fetch_many(job_ids)
    store.forget(owner, [job_id for job_id, job in zip(job_ids, jobs, strict=True) if job is None])
    started = [
        i for i, job in enumerate(jobs) if job is not None and job.get_status(refresh=False) == "started"
    ]
    if started:
        for origin in {jobs[i].origin for i in started}:  # type: ignore[union-attr]
            store.reap_abandoned(origin)
        for i, job in zip(started, store.fetch_many([job_ids[i] for i in started]), strict=True):
            jobs[i] = job
    flags = store.cancel_requested(job_ids)
    return [
        job_record(job, flag, store.position(job) if job.get_status(refresh=False) == "queued" else None)
        if job is not None
        else None
        for job, flag in zip(jobs, flags, strict=True)
    ]


def finished_job(
    store: JobStore,
    job_id: str,
    owner: str | None = None,
    kinds: tuple[JobKind, ...] | None = ("attribution",),
) -> Job:
    """The job, when it has finished; 409 while it runs or when it failed, 404/410 as `get_job`.

    Args:
        kinds: the job kinds the caller applies to (None: any); another kind is a 422 that says so. The
            default suits what works on attribution scores only (re-aggregation).
    """
    job = get_job(store, job_id, owner)
    if kinds is not None and job.kind not in kinds:
        raise InvalidRequestError(
            f"job {job_id} is an {job.kind} job: this applies to {' and '.join(kinds)} jobs only",
            kind=job.kind,
        )
    if job.status == "finished":
        return job
    if job.status in TERMINAL_STATUSES:
        raise JobFailedError(job_id, job.status, job.error)
    raise JobNotReadyError(job_id, job.status)
