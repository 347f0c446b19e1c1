"""Readiness: Redis answers and at least one RQ worker is alive."""

from __future__ import annotations

from redis.exceptions import RedisError

from schemas.catalogue import Readiness
from schemas.errors import ServiceNotReadyError
from service.defaults import READYZ_RETRY_AFTER_S
from service.keys import queue_name
from service.queue import JobQueue


def check_ready(queue: JobQueue) -> Readiness:
    """Readiness, or ServiceNotReadyError (503 with Retry-After)."""
    try:
        queue.connection.ping()
        workers = queue.live_workers()
    except RedisError as exc:
        raise ServiceNotReadyError(f"Redis is unreachable: {exc}", READYZ_RETRY_AFTER_S) from None
    if not workers:
        raise ServiceNotReadyError("no worker is alive: jobs would wait", READYZ_RETRY_AFTER_S, workers=0)
    listened = {name for queues in workers.values() for name in queues}
    idle_models = sorted(model_id for model_id in queue.queues if queue_name(model_id) not in listened)
    return Readiness(workers=len(workers), models_without_workers=idle_models)
