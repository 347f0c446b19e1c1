"""Callbacks: when a job that named a `callback_url` ends, the API POSTs its final record there, signed.

Each API process (with callbacks on) runs a `CallbackSender` task that listens to every job's end
announcement (the workers' end channels); the one process that claims a job (SET NX in Redis) delivers its
callback, retrying with exponential backoff, in a task of its own: neither a worker nor a request ever waits
for a receiver. The body is the job record as `GET /v1/jobs/{id}` returns it; `Seqattr-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with `SEQATTR_CALLBACK_SECRET` lets the receiver check it.
Only hosts in `SEQATTR_CALLBACK_ALLOWED_HOSTS` are called: checked at submit and again before each delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from schemas.defaults import (
    CALLBACK_ATTEMPTS,
    CALLBACK_BACKOFF_S,
    CALLBACK_END_WAIT_S,
    CALLBACK_TIMEOUT_S,
    LONG_POLL_SETTLE_S,
)
from schemas.errors import CallbackNotAllowedError, SeqattrError
from schemas.jobs import TERMINAL_STATUSES, Job
from schemas.redis_keys import JOB_ENDED_PATTERN, batch_of_key, callback_claim_key
from service.batches import ended_batch_with_callback
from service.job_operations import get_job
from service.job_store import JobStore
from service.settings import ApiSettings

logger = logging.getLogger("seqattr.callbacks")

SIGNATURE_HEADER = "Seqattr-Signature"

RESUBSCRIBE_S = 1.0
"""Wait before the sender subscribes again after Redis dropped its subscription."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Seqattr-Signature` header value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    return shown, f"{shown}:{port}"


def check_callback_url(url: str, allowed: list[str]) -> None:
    """CallbackNotAllowedError (422) unless the URL's host, or host:port, is allowed."""
    host, host_port = _host_port(url)
    if host not in allowed and host_port not in allowed:
        raise CallbackNotAllowedError(host_port, allowed)


def check_submitted_callback(url: str | None, settings: ApiSettings) -> None:
    """Refuse a submitted `callback_url` the service may not call (422), before anything is enqueued; the
    sender checks the host again before each delivery."""
    if url is not None:
        check_callback_url(url, settings.callback_hosts())


class CallbackSender:
    """Delivers the callbacks of the jobs that end, while the API runs.

    Args:
        store: the job store (records are read from it).
        redis: the async client whose pub/sub carries the end announcements.
        settings: the allow-list and the signing secret.
    """

    def __init__(self, store: JobStore, redis: AsyncRedis, settings: ApiSettings) -> None:
        self._store = store
        self._redis = redis
        self._allowed = settings.callback_hosts()
        self._secret = settings.callback_secret or ""
        self._claim_ttl_s = settings.result_ttl_s
        self._client = httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_S, follow_redirects=False, trust_env=False)
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, store: JobStore, redis: AsyncRedis, settings: ApiSettings) -> CallbackSender:
        """A sender, listening when callbacks are on (an allow-list is set); idle otherwise."""
        sender = cls(store, redis, settings)
        if sender._allowed:
            sender._listener = asyncio.create_task(sender._listen(), name="callback-listener")
        return sender

    async def stop(self) -> None:
        """Stop listening and drop deliveries in flight (a stopping API cannot wait out their backoff)."""
        pending = [t for t in (self._listener, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.aclose()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(JOB_ENDED_PATTERN)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=RESUBSCRIBE_S)
                    if message is not None:
                        job_id = message["channel"].decode().rsplit(":", 1)[-1]
                        task = asyncio.create_task(self._handle(job_id))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            except RedisError:
                logger.warning("callbacks: lost the end announcements; subscribing again", exc_info=True)
                await asyncio.sleep(RESUBSCRIBE_S)
            finally:
                await pubsub.aclose()

    async def _handle(self, job_id: str) -> None:
        try:
            rq_job = await run_in_threadpool(self._store.fetch, job_id)
            if rq_job is None:
                return
            url = (rq_job.kwargs or {}).get("request", {}).get("callback_url")
            in_batch = bool(await self._redis.exists(batch_of_key(job_id)))
            if not url and not in_batch:
                return  # most jobs: nothing to deliver, nothing to wait for
            job = await self._ended_job(job_id, (rq_job.meta or {}).get("owner"))
            if job is None:
                return
            if url and await self._claim(job_id):
                await self._deliver(str(url), f"job {job_id}", job.model_dump_json().encode())
            if in_batch:
                # The chunk's end is recorded (above) before its batch is read, so the last chunk to end
                # sees every chunk ended.
                ended = await run_in_threadpool(ended_batch_with_callback, self._store, job_id)
                if ended is not None and await self._claim("batch:" + ended[0].id):
                    batch, batch_url = ended
                    await self._deliver(batch_url, f"batch {batch.id}", batch.model_dump_json().encode())
        except (RedisError, SeqattrError):
            logger.warning("callback after job %s not delivered", job_id, exc_info=True)

    async def _claim(self, name: str) -> bool:
        """Whether this process delivers `name`'s callback (one API process claims each)."""
        return bool(await self._redis.set(callback_claim_key(name), b"1", nx=True, ex=self._claim_ttl_s))

    async def _ended_job(self, job_id: str, owner: str | None) -> Job | None:
        """The job's final record once RQ has recorded its end (the worker announces it just before), or
        None when it does not end within `CALLBACK_END_WAIT_S` (a lost worker's job put back in its queue)."""
        deadline = time.monotonic() + CALLBACK_END_WAIT_S
        while True:
            job = await run_in_threadpool(get_job, self._store, job_id, owner)
            if job.status in TERMINAL_STATUSES:
                return job
            if time.monotonic() > deadline:
                logger.info("job %s announced its end but reads %s: no callback yet", job_id, job.status)
                return None
            await asyncio.sleep(LONG_POLL_SETTLE_S)

    async def _deliver(self, url: str, what: str, body: bytes) -> None:
        try:
            check_callback_url(url, self._allowed)
        except CallbackNotAllowedError as exc:
            logger.warning("callback of %s refused: %s", what, exc.detail)
            return
        delay_s = CALLBACK_BACKOFF_S
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self._secret, int(time.time()), body),
                "Seqattr-Delivery-Attempt": str(attempt),
            }
            try:
                response = await self._client.post(url, content=body, headers=headers)
                if response.is_success:
                    logger.info("callback of %s delivered (attempt %d)", what, attempt)
                    return
                failure = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            if attempt < CALLBACK_ATTEMPTS:
                logger.info("callback of %s failed (%s); retrying in %.1f s", what, failure, delay_s)
                await asyncio.sleep(delay_s)
                delay_s *= 2
        logger.warning("callback of %s given up after %d attempts (%s)", what, attempt, failure)
