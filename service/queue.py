"""The queue adapter: RQ queues (one per model), job records, results, the job index and tombstones.

Everything the API knows about Redis goes through `JobQueue`; it speaks in RQ jobs and raw bytes and
leaves the API's view of a job to `service.jobs`. Jobs are serialized as JSON, never pickle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat
from rq.worker_registration import get_keys as worker_keys

from service.defaults import JOB_FUNCTION, QUEUE_PREFIX, TOMBSTONE_TTL_S
from service.keys import JOB_INDEX, cancel_key, idempotency_key, queue_name, result_key, tombstone_key

SERIALIZER = JSONSerializer
"""Serializer of every job's arguments, meta and return value."""


@dataclass(frozen=True)
class Retention:
    """How long jobs may wait, run and be kept."""

    job_timeout_s: int
    queued_ttl_s: int
    result_ttl_s: int

    @property
    def tombstone_ttl_s(self) -> int:
        """A tombstone outlives the longest possible life of its job by `TOMBSTONE_TTL_S`."""
        return self.queued_ttl_s + self.job_timeout_s + self.result_ttl_s + TOMBSTONE_TTL_S


@dataclass(frozen=True)
class IndexEntry:
    job_id: str
    score: float


class JobQueue:
    """Enqueues, reads, cancels and deletes jobs in one Redis.

    Args:
        connection: a redis-py client with `decode_responses=False` (RQ needs bytes).
        model_ids: the models whose queues exist.
        retention: timeouts and TTLs given to new jobs.
    """

    def __init__(self, connection: Redis, model_ids: Iterable[str], retention: Retention) -> None:
        self.connection = connection
        self.retention = retention
        self.queues = {
            model_id: Queue(queue_name(model_id), connection=connection, serializer=SERIALIZER)
            for model_id in model_ids
        }

    def enqueue(self, job_id: str, model_id: str, kind: str, request: dict[str, Any]) -> Job:
        """Put a job on its model's queue and record it in the index, atomically."""
        queue = self.queues[model_id]
        now = time.time()
        with self.connection.pipeline() as pipe:
            job = queue.enqueue_call(
                JOB_FUNCTION,
                kwargs={"request": request},
                job_id=job_id,
                timeout=self.retention.job_timeout_s,
                ttl=self.retention.queued_ttl_s,
                result_ttl=self.retention.result_ttl_s,
                failure_ttl=self.retention.result_ttl_s,
                # The default description repr()s the arguments, i.e. every input text.
                description=f"{kind} {model_id} {request.get('method', '')}".strip(),
                meta={"kind": kind, "progress": {"done": 0, "total": 0}},
                pipeline=pipe,
            )
            pipe.zadd(JOB_INDEX, {job_id: now})
            pipe.set(tombstone_key(job_id), b"1", ex=self.retention.tombstone_ttl_s)
            pipe.execute()
        return job

    def fetch(self, job_id: str) -> Job | None:
        """The RQ job, or None when it does not exist (never did, expired or deleted)."""
        try:
            return Job.fetch(job_id, connection=self.connection, serializer=SERIALIZER)
        except NoSuchJobError:
            return None

    def fetch_many(self, job_ids: list[str]) -> list[Job | None]:
        return Job.fetch_many(job_ids, connection=self.connection, serializer=SERIALIZER)

    def has_tombstone(self, job_id: str) -> bool:
        return bool(self.connection.exists(tombstone_key(job_id)))

    def cancel_requested(self, job_ids: list[str]) -> list[bool]:
        """For each job id, whether a stop was requested while it ran."""
        with self.connection.pipeline() as pipe:
            for job_id in job_ids:
                pipe.exists(cancel_key(job_id))
            return [bool(n) for n in pipe.execute()]

    def position(self, job: Job) -> int | None:
        queue = self.queues.get(job.origin.removeprefix(QUEUE_PREFIX))
        return queue.get_job_position(job.id) if queue is not None else None

    def reap_abandoned(self, queue_name: str) -> None:
        """Let RQ move a queue's abandoned jobs (their worker stopped heartbeating) to failed.

        A worker refreshes its running job's entry in the started registry; once the entry's expiry
        passes, RQ's `StartedJobRegistry.cleanup` fails the job with AbandonedJobError. Workers run this
        cleanup periodically too; running it when a started job is read reports a dead worker's job
        as soon as its heartbeat has lapsed.
        """
        StartedJobRegistry(queue_name, connection=self.connection, serializer=SERIALIZER).cleanup()

    def cancel(self, job: Job) -> None:
        """Stop a queued job at once; a running one stops at its next progress step."""
        # The flag is set in both cases: a worker may dequeue the job between our read and the cancel.
        ttl = self.retention.job_timeout_s + self.retention.result_ttl_s
        self.connection.set(cancel_key(job.id), b"1", ex=ttl)
        if job.get_status(refresh=True) == "started":
            return
        try:
            job.cancel()
        except InvalidJobOperation:
            return  # canceled already
        # RQ records no end time for a canceled job, and would keep it until its queued TTL: record when
        # it ended and keep it as long as a finished one.
        with self.connection.pipeline() as pipe:
            pipe.hset(job.key, "ended_at", utcformat(now()))
            pipe.expire(job.key, self.retention.result_ttl_s)
            pipe.execute()

    def delete(self, job: Job) -> None:
        """Remove a job's record, result, index entry and tombstone: its id becomes unknown."""
        job.delete()
        self.connection.delete(result_key(job.id), cancel_key(job.id), tombstone_key(job.id))
        self.connection.zrem(JOB_INDEX, job.id)

    def result_bytes(self, job_id: str) -> bytes | None:
        return self.connection.get(result_key(job_id))

    def index_page(self, after: IndexEntry | None, count: int) -> list[IndexEntry]:
        """Up to `count` index entries, newest first, strictly after `after` in that order."""
        if after is None:
            rows = self.connection.zrevrange(JOB_INDEX, 0, count - 1, withscores=True)
        else:
            # Entries tied on the cursor's score sort by id (descending); skip those not after it.
            ties = self.connection.zcount(JOB_INDEX, after.score, after.score)
            rows = self.connection.zrevrangebyscore(
                JOB_INDEX, after.score, "-inf", start=0, num=count + ties, withscores=True
            )
            rows = [
                (member, score)
                for member, score in rows
                if score < after.score or member.decode() < after.job_id
            ][:count]
        return [IndexEntry(member.decode(), score) for member, score in rows]

    def forget(self, job_ids: list[str]) -> None:
        """Drop index entries whose job records are gone."""
        if job_ids:
            self.connection.zrem(JOB_INDEX, *job_ids)

    def claim_idempotency_key(self, key: str, body_hash: str, job_id: str) -> tuple[str, str] | None:
        """Bind `key` to a new job, or return the (job id, body hash) it is already bound to."""
        redis_key = idempotency_key(key)
        value = orjson.dumps({"job_id": job_id, "body_hash": body_hash})
        if self.connection.set(redis_key, value, nx=True, ex=self.retention.result_ttl_s):
            return None
        existing = self.connection.get(redis_key)
        if existing is None:  # expired between the two calls: try once more
            return self.claim_idempotency_key(key, body_hash, job_id)
        data = orjson.loads(existing)
        return data["job_id"], data["body_hash"]

    def release_idempotency_key(self, key: str) -> None:
        self.connection.delete(idempotency_key(key))

    def live_workers(self) -> dict[str, list[str]]:
        """Worker name -> queue names, for workers whose registration has not expired."""
        keys = sorted(worker_keys(connection=self.connection))
        with self.connection.pipeline() as pipe:
            for key in keys:
                pipe.hget(key, "queues")
            queues = pipe.execute()
        return {
            key.removeprefix("rq:worker:"): (q.decode().split(",") if q else [])
            for key, q in zip(keys, queues, strict=True)
            if q is not None
        }
