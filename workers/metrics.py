"""What a worker adds up in Redis for the API's `GET /metrics`: jobs ended by status and method, job and
engine time histograms by method, model loads. Counting never fails a job: Redis errors are only logged."""

from __future__ import annotations

import logging

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from schemas.defaults import DURATION_BUCKETS_S
from schemas.redis_keys import ENGINE_SECONDS, JOB_SECONDS, JOBS_ENDED, MODEL_LOADS

logger = logging.getLogger(__name__)


def _observe(pipe: Pipeline, key: str, method: str, seconds: float) -> None:
    for bound in DURATION_BUCKETS_S:
        if seconds <= bound:
            pipe.hincrby(key, f"{method}|{bound}", 1)
    pipe.hincrby(key, f"{method}|+Inf", 1)
    pipe.hincrby(key, f"{method}|count", 1)
    pipe.hincrbyfloat(key, f"{method}|sum", seconds)


def record_job(
    connection: Redis, status: str, method: str, job_seconds: float, engine_seconds: float | None
) -> None:
    """Count one ended job (`finished`, `failed` or `canceled`) and its times."""
    try:
        with connection.pipeline(transaction=False) as pipe:
            pipe.hincrby(JOBS_ENDED, f"{status}|{method}", 1)
            _observe(pipe, JOB_SECONDS, method, job_seconds)
            if engine_seconds is not None:
                _observe(pipe, ENGINE_SECONDS, method, engine_seconds)
            pipe.execute()
    except RedisError:
        logger.warning("could not record the metrics of a %s job", status, exc_info=True)


def record_model_load(connection: Redis, model_id: str) -> None:
    try:
        connection.hincrby(MODEL_LOADS, model_id, 1)
    except RedisError:
        logger.warning("could not record the load of %s", model_id, exc_info=True)
