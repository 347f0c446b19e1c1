"""The Redis key layout that the API and the workers share, next to RQ's own `rq:*` keys."""

from __future__ import annotations

import hashlib

from service.defaults import QUEUE_PREFIX

PREFIX = "seqattr:"
"""Prefix of every key Seqattr writes itself."""

JOB_INDEX = PREFIX + "jobs"
"""Sorted set of job ids scored by creation time: `GET /v1/jobs` reads it newest first."""


def queue_name(model_id: str) -> str:
    """The RQ queue of one model."""
    return QUEUE_PREFIX + model_id


def result_key(job_id: str) -> str:
    """The orjson bytes of a finished job's result."""
    return f"{PREFIX}result:{job_id}"


def cancel_key(job_id: str) -> str:
    """Present while a running job has been asked to stop."""
    return f"{PREFIX}cancel:{job_id}"


def tombstone_key(job_id: str) -> str:
    """Outlives the job record so an expired id answers 410 rather than 404."""
    return f"{PREFIX}tombstone:{job_id}"


def idempotency_key(key: str) -> str:
    """Maps a client's `Idempotency-Key` to the job it created (hashed: keys are arbitrary text)."""
    return f"{PREFIX}idempotency:{hashlib.sha256(key.encode()).hexdigest()}"
