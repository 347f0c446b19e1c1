"""Server-Sent Events of one job (`GET /v1/jobs/{id}/events`) or batch (`GET /v1/batches/{id}/events`): its
record, sent again on every status or progress change until a terminal status, then the stream ends.

Workers publish each progress write on the job's events channel and announce its end on its end channel
(`schemas.redis_keys`); a stream subscribes to both before it first reads the job, so that nothing written
after that read is missed, and re-reads the record on each message. It also re-reads the job every
`SSE_POLL_S` without news: no worker announces a start, a queued job canceled, or a lost worker.

A batch's stream re-reads the batch (its chunk jobs) every `SSE_POLL_S`: no channel carries a batch's news.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from schemas.batches import Batch
from schemas.defaults import LONG_POLL_SETTLE_S, SSE_KEEPALIVE_S, SSE_POLL_S
from schemas.errors import JobExpiredError, UnknownBatchError, UnknownJobError
from schemas.jobs import TERMINAL_STATUSES, Job, Progress
from schemas.redis_keys import job_ended_channel, job_events_channel
from service.batches import get_batch
from service.job_operations import get_job
from service.job_store import JobStore

logger = logging.getLogger("seqattr.events")

KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment: clients ignore it, proxies see traffic."""

SETTLE_WINDOW_S = 1.0
"""How long a stream re-reads its job every `LONG_POLL_SETTLE_S` once the end is announced or read."""


def sse_event(event: str, event_id: int, record: BaseModel) -> bytes:
    """One SSE event whose data is a record's JSON (one line: JSON never holds a raw newline)."""
    return f"event: {event}\nid: {event_id}\ndata: {record.model_dump_json()}\n\n".encode()


async def _subscribe(redis: AsyncRedis | None, job_id: str) -> PubSub | None:
    """A subscription to the job's progress and end channels, or None (no event client, or Redis refused
    one): the stream then only re-reads the job every `SSE_POLL_S`."""
    if redis is None:
        return None
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(job_events_channel(job_id), job_ended_channel(job_id))
    except RedisError:
        logger.warning("job %s: event stream without a subscription", job_id, exc_info=True)
        await pubsub.aclose()
        return None
    return pubsub


async def open_job_events(
    store: JobStore,
    redis: AsyncRedis | None,
    job_id: str,
    owner: str | None,
    keepalive_s: float = SSE_KEEPALIVE_S,
    poll_s: float = SSE_POLL_S,
) -> AsyncIterator[bytes]:
    """Subscribe, then read the job (UnknownJobError / JobExpiredError before any byte is sent); returns
    the stream of its events, which owns the subscription."""
    pubsub = await _subscribe(redis, job_id)
    try:
        first = await run_in_threadpool(get_job, store, job_id, owner)
    except BaseException:
        if pubsub is not None:
            await pubsub.aclose()
        raise
    return _stream(store, pubsub, first, owner, keepalive_s, poll_s)


async def _next_message(pubsub: PubSub | None, timeout_s: float) -> dict[str, Any] | None:
    """The next message within `timeout_s`, or None (also when there is no subscription)."""
    if pubsub is not None:
        try:
            return await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
        except RedisError:
            logger.warning("an event stream lost its subscription", exc_info=True)
    await asyncio.sleep(timeout_s)
    return None


def _progress(message: dict[str, Any] | None, channel: bytes) -> Progress | None:
    """The progress a worker published, when `message` is one of the job's progress writes."""
    if message is None or message.get("channel") != channel:
        return None
    try:
        return Progress(**orjson.loads(message["data"]))
    except (orjson.JSONDecodeError, TypeError, ValidationError):
        return None


async def _stream(
    store: JobStore, pubsub: PubSub | None, job: Job, owner: str | None, keepalive_s: float, poll_s: float
) -> AsyncIterator[bytes]:
    events_channel = job_events_channel(job.id).encode()
    sent, event_id = job, 1
    settle_until = 0.0  # while the end is near (announced, or read), re-read every few milliseconds
    try:
        yield sse_event("status", event_id, job)
        last_write = time.monotonic()
        while sent.status not in TERMINAL_STATUSES:
            now = time.monotonic()
            quiet_s = keepalive_s - (now - last_write)
            wait_s = LONG_POLL_SETTLE_S if now < settle_until else min(poll_s, quiet_s)
            message = await _next_message(pubsub, max(wait_s, 0.0))
            progress = _progress(message, events_channel)
            try:
                job = await run_in_threadpool(get_job, store, job.id, owner)
            except (UnknownJobError, JobExpiredError):
                return  # deleted or expired while followed: nothing more will happen to it
            ended = job.status in TERMINAL_STATUSES
            if (message is not None and progress is None) or (ended and now >= settle_until):
                settle_until = time.monotonic() + SETTLE_WINDOW_S  # RQ records an announced end in ms
            view = job
            if progress is not None:
                # Every write is a step the client must see, even when the record has moved on since: a write
                # read after the job's end is shown as the running job that wrote it.
                base = sent if ended else job
                view = base.model_copy(update={"progress": progress, "status": "started", "position": None})
            if (view.status, view.progress) != (sent.status, sent.progress):
                event_id += 1
                yield sse_event("status" if view.status != sent.status else "progress", event_id, view)
                sent, last_write = view, time.monotonic()
            elif time.monotonic() - last_write >= keepalive_s:
                yield KEEPALIVE
                last_write = time.monotonic()
    finally:
        if pubsub is not None:
            await pubsub.aclose()


BATCH_TERMINAL_STATUSES = frozenset({"finished", "canceled"})
"""Statuses a batch never leaves."""


async def open_batch_events(
    store: JobStore,
    batch_id: str,
    owner: str | None,
    keepalive_s: float = SSE_KEEPALIVE_S,
    poll_s: float = SSE_POLL_S,
) -> AsyncIterator[bytes]:
    """Read the batch (UnknownBatchError before any byte is sent); returns the stream of its events."""
    first = await run_in_threadpool(get_batch, store, batch_id, owner)
    return _batch_stream(store, first, owner, keepalive_s, poll_s)


def _batch_news(batch: Batch) -> tuple[Any, ...]:
    return batch.status, batch.done, batch.counts


async def _batch_stream(
    store: JobStore, batch: Batch, owner: str | None, keepalive_s: float, poll_s: float
) -> AsyncIterator[bytes]:
    event_id = 1
    yield sse_event("status", event_id, batch)
    last_write = time.monotonic()
    while batch.status not in BATCH_TERMINAL_STATUSES:
        await asyncio.sleep(max(0.0, min(poll_s, keepalive_s - (time.monotonic() - last_write))))
        try:
            latest = await run_in_threadpool(get_batch, store, batch.id, owner)
        except UnknownBatchError:
            return  # deleted while followed
        if _batch_news(latest) != _batch_news(batch):
            event_id += 1
            yield sse_event("status" if latest.status != batch.status else "progress", event_id, latest)
            batch, last_write = latest, time.monotonic()
        elif time.monotonic() - last_write >= keepalive_s:
            yield KEEPALIVE
            last_write = time.monotonic()
