"""The job store: RQ queues (one per model), job records, results, the job index, tombstones, idempotency
keys and worker registrations, in one Redis.

All of the API's Redis access goes through `JobStore`; it speaks in RQ jobs and raw bytes and leaves the
API's view of a job to `service.job_operations`. Key names and the serializer come from the shared contract
(`schemas.redis_keys`), which the workers use too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.utils import now, utcformat
from rq.worker_registration import get_keys as worker_keys

from schemas.defaults import LOST_WORKER_RETRIES, TOMBSTONE_TTL_S
from schemas.errors import JobExpiredError
from schemas.redis_keys import (
    ENGINE_SECONDS,
    JOB_FUNCTIONS,
    JOB_SECONDS,
    JOBS_ENDED,
    MODEL_LOADS,
    SERIALIZER,
    cancel_key,
    idempotency_key,
    job_ended_channel,
    job_index,
    model_of_queue,
    queue_name,
    result_key,
    scores_key,
    tombstone_key,
)


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
class StoredResult:
    """A finished job's result as its worker stored it (orjson bytes in Redis), read only when asked: in
    ranges while it streams out, or whole to be converted."""

    store: JobStore
    job_id: str
    size: int

    def chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        """The bytes, `chunk_bytes` at a time (one GETRANGE each); JobExpiredError if the result disappears
        (deleted or expired) while it is read."""
        for start in range(0, self.size, chunk_bytes):
            end = min(start + chunk_bytes, self.size)
            data = self.store.result_range(self.job_id, start, end)
            if len(data) != end - start:
                raise JobExpiredError(self.job_id)
            yield data

    def read(self) -> bytes:
        """All the bytes at once (JobExpiredError if they are gone)."""
        data = self.store.result_bytes(self.job_id)
        if data is None:
            raise JobExpiredError(self.job_id)
        return data


@dataclass(frozen=True)
class IndexEntry:
    job_id: str
    score: float


class JobStore:
    """Enqueues, reads, cancels and deletes jobs in one Redis, and reports on its workers.

    Args:
        connection: a redis-py client with `decode_responses=False` (RQ needs bytes).
        model_ids: the models whose queues exist.
        retention: timeouts and TTLs given to new jobs.
    """

    def __init__(
        self,
        connection: Redis,
        model_ids: Iterable[str],
        retention: Retention,
        events: AsyncRedis | None = None,
    ) -> None:
        self._redis = connection
        self._events = events
        self.retention = retention
        self._queues = {
            model_id: Queue(queue_name(model_id), connection=connection, serializer=SERIALIZER)
            for model_id in model_ids
        }

    @property
    def model_ids(self) -> list[str]:
        """The models whose queues this store knows."""
        return list(self._queues)

    def queue_length(self, model_id: str) -> int:
        """Jobs waiting in a model's queue."""
        return int(self._queues[model_id].count)

    def ping(self) -> None:
        """Raise a redis error when Redis does not answer."""
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()

    @asynccontextmanager
    async def job_end_signal(self, job_id: str) -> AsyncIterator[Callable[[float], Awaitable[bool]]]:
        """Subscribe to the job's end announcement for the block; yields `wait(timeout_s) -> announced`.

        Without a subscription (no event client, or Redis refused one: too many long polls, an outage) the
        wait is a plain sleep, and the long poll falls back to re-reading the job on its interval.
        """

        async def sleep(timeout_s: float) -> bool:
            await asyncio.sleep(timeout_s)
            return False

        if self._events is None:
            yield sleep
            return
        pubsub = self._events.pubsub()
        try:
            try:
                await pubsub.subscribe(job_ended_channel(job_id))
            except RedisError:
                yield sleep
                return

            async def wait(timeout_s: float) -> bool:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
                except RedisError:
                    await asyncio.sleep(timeout_s)
                    return False
                return message is not None

            yield wait
        finally:
            await pubsub.aclose()

    def enqueue(
        self, job_id: str, model_id: str, kind: str, request: dict[str, Any], owner: str | None = None
    ) -> Job:
        """Put a job on its model's queue and record it in its owner's index, atomically.

        Args:
            owner: the name of the API key that created it (None without keys); only it sees the job.
        """
        queue = self._queues[model_id]
        now = time.time()
        with self._redis.pipeline() as pipe:
            job = queue.enqueue_call(
                JOB_FUNCTIONS[kind],
                kwargs={"request": request},
                job_id=job_id,
                timeout=self.retention.job_timeout_s,
                ttl=self.retention.queued_ttl_s,
                result_ttl=self.retention.result_ttl_s,
                failure_ttl=self.retention.result_ttl_s,
                # The default description repr()s the arguments, i.e. every input text.
                description=f"{kind} {model_id} {request.get('method', '')}".strip(),
                meta={"kind": kind, "owner": owner, "progress": {"done": 0, "total": 0}},
                # A job whose worker dies is put back on its queue once (RQ re-queues an abandoned job that
                # has retries left); the job function spends the retry itself on failures it reports.
                retry=Retry(max=LOST_WORKER_RETRIES),
                pipeline=pipe,
            )
            pipe.zadd(job_index(owner), {job_id: now})
            pipe.set(tombstone_key(job_id), (owner or "").encode(), ex=self.retention.tombstone_ttl_s)
            pipe.execute()
        return job

    def fetch(self, job_id: str) -> Job | None:
        """The RQ job, or None when it does not exist (never did, expired or deleted)."""
        try:
            return Job.fetch(job_id, connection=self._redis, serializer=SERIALIZER)
        except NoSuchJobError:
            return None

    def fetch_many(self, job_ids: list[str]) -> list[Job | None]:
        return Job.fetch_many(job_ids, connection=self._redis, serializer=SERIALIZER)

    def has_tombstone(self, job_id: str, owner: str | None) -> bool:
        """Whether `owner` created this id and it has expired (another key's id stays unknown)."""
        return self._redis.get(tombstone_key(job_id)) == (owner or "").encode()

    def cancel_requested(self, job_ids: list[str]) -> list[bool]:
        """For each job id, whether a stop was requested while it ran."""
        with self._redis.pipeline() as pipe:
            for job_id in job_ids:
                pipe.exists(cancel_key(job_id))
            return [bool(n) for n in pipe.execute()]

    def position(self, job: Job) -> int | None:
        queue = self._queues.get(model_of_queue(job.origin) or "")
        return queue.get_job_position(job.id) if queue is not None else None

    def reap_abandoned(self, origin: str) -> None:
        """Let RQ move a queue's abandoned jobs (their worker stopped heartbeating) to failed.

        A worker refreshes its running job's entry in the started registry; once the entry's expiry
        passes, RQ's `StartedJobRegistry.cleanup` fails the job with AbandonedJobError. Workers run this
        cleanup periodically too; running it when a started job is read reports a dead worker's job
        as soon as its heartbeat has lapsed.
        """
        registry = StartedJobRegistry(origin, connection=self._redis, serializer=SERIALIZER)
        before = set(registry.get_job_ids())
        registry.cleanup()
        # A dead worker cannot announce its job's end: announce the ones RQ failed or re-queued just now.
        for job_id in before - set(registry.get_job_ids()):
            self._redis.publish(job_ended_channel(job_id), b"1")

    def cancel(self, job: Job) -> None:
        """Stop a queued job at once; a running one stops at its next progress step."""
        # The flag is set in both cases: a worker may dequeue the job between our read and the cancel.
        ttl = self.retention.job_timeout_s + self.retention.result_ttl_s
        self._redis.set(cancel_key(job.id), b"1", ex=ttl)
        if job.get_status(refresh=True) == "started":
            return
        try:
            job.cancel()
        except InvalidJobOperation:
            return  # canceled already
        # RQ records no end time for a canceled job, and would keep it until its queued TTL: record when
        # it ended and keep it as long as a finished one.
        with self._redis.pipeline() as pipe:
            pipe.hset(job.key, "ended_at", utcformat(now()))
            pipe.expire(job.key, self.retention.result_ttl_s)
            # No worker announces a job that never ran: long polls, event streams and callbacks hear it here.
            pipe.publish(job_ended_channel(job.id), b"1")
            pipe.execute()

    def delete(self, job: Job) -> None:
        """Remove a job's record, result, index entry and tombstone: its id becomes unknown."""
        owner = (job.meta or {}).get("owner")
        job.delete()
        self._redis.delete(result_key(job.id), scores_key(job.id), cancel_key(job.id), tombstone_key(job.id))
        self._redis.zrem(job_index(owner), job.id)

    def result_bytes(self, job_id: str) -> bytes | None:
        return cast("bytes | None", self._redis.get(result_key(job_id)))

    def stored_result(self, job_id: str) -> StoredResult | None:
        """A reader of the job's stored result (its size read now, its bytes when asked), or None when there
        is none (a stored result is never empty)."""
        size = int(self._redis.strlen(result_key(job_id)))
        return StoredResult(self, job_id, size) if size else None

    def result_range(self, job_id: str, start: int, end: int) -> bytes:
        """Bytes `[start, end)` of the stored result (fewer, or none, if it is shorter or gone)."""
        if end <= start:
            return b""
        return cast(bytes, self._redis.getrange(result_key(job_id), start, end - 1))

    def scores_bytes(self, job_id: str) -> bytes | None:
        """The scores kept beside a finished job's result (`schemas.scores.archive`), for re-aggregation."""
        return cast("bytes | None", self._redis.get(scores_key(job_id)))

    def index_page(self, owner: str | None, after: IndexEntry | None, count: int) -> list[IndexEntry]:
        """Up to `count` entries of `owner`'s index, newest first, strictly after `after` in that order."""
        index = job_index(owner)
        rows: list[tuple[bytes, float]]
        if after is None:
            rows = cast(Any, self._redis.zrevrange(index, 0, count - 1, withscores=True))
        else:
            # Entries tied on the cursor's score sort by id (descending); skip those not after it.
            ties = self._redis.zcount(index, after.score, after.score)
            rows = cast(
                Any,
                self._redis.zrevrangebyscore(
                    index, after.score, "-inf", start=0, num=count + ties, withscores=True
                ),
            )
            rows = [
                (member, score)
                for member, score in rows
                if score < after.score or member.decode() < after.job_id
            ][:count]
        return [IndexEntry(member.decode(), score) for member, score in rows]

    def forget(self, owner: str | None, job_ids: list[str]) -> None:
        """Drop entries of `owner`'s index whose job records are gone."""
        if job_ids:
            self._redis.zrem(job_index(owner), *job_ids)

    def claim_idempotency_key(
        self, key: str, owner: str | None, body_hash: str, job_id: str
    ) -> tuple[str, str, float] | None:
        """Bind `owner`'s `key` to a new job, or return the (job id, body hash, claim time) it is bound to."""
        redis_key = idempotency_key(key, owner)
        value = orjson.dumps({"job_id": job_id, "body_hash": body_hash, "claimed_at": time.time()})
        if self._redis.set(redis_key, value, nx=True, ex=self.retention.result_ttl_s):
            return None
        existing = self._redis.get(redis_key)
        if existing is None:  # expired between the two calls: try once more
            return self.claim_idempotency_key(key, owner, body_hash, job_id)
        data = orjson.loads(existing)
        return data["job_id"], data["body_hash"], float(data.get("claimed_at", 0.0))

    def release_idempotency_key(self, key: str, owner: str | None) -> None:
        self._redis.delete(idempotency_key(key, owner))

    def metrics_snapshot(self) -> dict[str, Any]:
        """What `GET /metrics` reports for the whole service: each queue's length and oldest job's age,
        live workers, and the hashes workers add up (jobs ended, job and engine times, model loads)."""
        queues: dict[str, tuple[int, float]] = {}
        for model_id, queue in self._queues.items():
            first = queue.get_job_ids(0, 1)
            job = self.fetch(first[0]) if first else None
            enqueued = job.enqueued_at if job is not None else None
            age = (now() - enqueued.replace(tzinfo=now().tzinfo)).total_seconds() if enqueued else 0.0
            queues[model_id] = (queue.count, max(0.0, age))
        with self._redis.pipeline(transaction=False) as pipe:
            for key in (JOBS_ENDED, JOB_SECONDS, ENGINE_SECONDS, MODEL_LOADS):
                pipe.hgetall(key)
            jobs_ended, job_seconds, engine_seconds, model_loads = pipe.execute()
        return {
            "queues": queues,
            "workers": len(self.live_workers()),
            "jobs_ended": jobs_ended,
            "job_seconds": job_seconds,
            "engine_seconds": engine_seconds,
            "model_loads": model_loads,
        }

    def models_without_workers(self, workers: dict[str, list[str]]) -> list[str]:
        """The models no live worker listens for (`workers` as from `live_workers`): their jobs wait."""
        listened = {name for queues in workers.values() for name in queues}
        return sorted(model_id for model_id in self._queues if queue_name(model_id) not in listened)

    def live_workers(self) -> dict[str, list[str]]:
        """Worker name -> queue names, for workers whose registration has not expired."""
        keys = sorted(worker_keys(connection=self._redis))
        with self._redis.pipeline() as pipe:
            for key in keys:
                pipe.hget(key, "queues")
            queues = pipe.execute()
        return {
            key.removeprefix("rq:worker:"): (q.decode().split(",") if q else [])
            for key, q in zip(keys, queues, strict=True)
            if q is not None
        }
