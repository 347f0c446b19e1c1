"""Readiness: Redis answers and at least one RQ worker is alive."""

from __future__ import annotations

from redis.exceptions import RedisError

from schemas.defaults import READYZ_RETRY_AFTER_S
from schemas.errors import ServiceNotReadyError
from schemas.health import Readiness
from service.job_store import JobStore


def check_ready(store: JobStore) -> Readiness:
    """Readiness, or ServiceNotReadyError (503 with Retry-After)."""
    try:
        store.ping()
        workers = store.live_workers()
    except RedisError as exc:
        raise ServiceNotReadyError(f"Redis is unreachable: {exc}", READYZ_RETRY_AFTER_S) from None
    if not workers:
        raise ServiceNotReadyError("no worker is alive: jobs would wait", READYZ_RETRY_AFTER_S, workers=0)
    return Readiness(workers=len(workers), models_without_workers=store.models_without_workers(workers))
