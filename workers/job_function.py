"""The job functions RQ runs in a worker: `run_attribution_job(request)` and `run_context_job(request)` (named
in the shared contract as `schemas.redis_keys.ATTRIBUTION_JOB_FUNCTION` and `CONTEXT_JOB_FUNCTION`).

It validates the stored request again, takes the model from the worker's cache, runs the engine with a
progress callback while the worker heartbeats, and stores the result as orjson bytes under its own key;
RQ's own return value stays tiny. Any failure ends the job `failed` with a problem body in
`job.meta['error']`.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import orjson
import torch
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from schemas.attribution import AttributionRequest
from schemas.context import ContextAttributionRequest
from schemas.defaults import (
    DEFAULT_MAX_GRANULAR_BYTES,
    MAX_JOB_COST,
    PROGRESS_MIN_INTERVAL_S,
    RESULT_TTL_S,
)
from schemas.errors import JobTimeoutError, OutOfMemoryError, SeqattrError
from schemas.models import load_registry
from schemas.redis_keys import cancel_key, job_ended_channel, job_events_channel, result_key, scores_key
from workers.engine.context_attribution import run_context_attribution
from workers.engine.run import attribute
from workers.metrics import record_job
from workers.model_cache import ModelCache
from workers.settings import get_worker_settings

logger = logging.getLogger(__name__)


def _no_heartbeats(job: Job) -> AbstractContextManager[None]:  # noqa: ARG001 (same shape as the worker's)
    return nullcontext()


@dataclass(frozen=True)
class JobRuntime:
    """What the worker gives the job function: its models, the progress throttle, and the heartbeats that
    run while a job does (they stop when the job function returns, before RQ records the outcome)."""

    model_cache: ModelCache
    progress_interval_s: float = PROGRESS_MIN_INTERVAL_S
    max_job_cost: int = MAX_JOB_COST
    max_granular_bytes: int = DEFAULT_MAX_GRANULAR_BYTES
    heartbeats: Callable[[Job], AbstractContextManager[None]] = _no_heartbeats


_runtime: JobRuntime | None = None


def configure(runtime: JobRuntime) -> None:
    """Set the job function's runtime (called once by the worker)."""
    global _runtime
    _runtime = runtime


def _current_runtime() -> JobRuntime:
    global _runtime
    # A plain `rq worker` never calls configure(): build a model cache from the environment on first use.
    if _runtime is None:
        settings = get_worker_settings()
        cache = ModelCache(load_registry(settings.models), settings.model_cache_dir, settings.device)
        _runtime = JobRuntime(
            cache, max_job_cost=settings.max_job_cost, max_granular_bytes=settings.max_granular_bytes
        )
    return _runtime


class JobCanceled(Exception):
    """Raised inside a job whose cancellation was requested; the API reports the job `canceled`."""


class ProgressReporter:
    """The engine's `on_progress(done, total)`: writes `job.meta['progress']`, at most every `min_interval_s`.

    The first and the last report are always written. Each write also checks whether the job was canceled.
    Every report checks the job's deadline too: RQ's timeout is one SIGALRM, whose exception a library's broad
    `except Exception` (in generation code, say) can swallow, after which nothing would stop the job.
    """

    def __init__(self, job: Job, min_interval_s: float = PROGRESS_MIN_INTERVAL_S) -> None:
        self.job = job
        self.min_interval_s = min_interval_s
        self.done = 0
        self.total = 0
        self._last_write: float | None = None
        timeout = job.timeout if isinstance(job.timeout, int | float) and job.timeout > 0 else None
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if self._deadline is not None and now > self._deadline:
            raise JobTimeoutException(f"Task exceeded maximum timeout value ({self.job.timeout} seconds)")
        due = self._last_write is None or now - self._last_write >= self.min_interval_s
        if due or done >= total:
            self._write(now)

    def finish(self) -> None:
        """Record the job as fully done (the engine's last report may have been throttled away)."""
        if self.total and self.done < self.total:
            self.done = self.total
        self._write(time.monotonic(), check=False)  # the result is stored: too late to cancel

    def check_canceled(self) -> None:
        if self.job.connection.exists(cancel_key(self.job.id)):
            raise JobCanceled(self.job.id)

    def _write(self, now: float, check: bool = True) -> None:
        if check:
            self.check_canceled()
        self._last_write = now
        self.job.meta["progress"] = {"done": self.done, "total": self.total}
        self.job.save_meta()
        # Event streams follow each write; a lost message only costs a stream one step, never the job.
        try:
            self.job.connection.publish(
                job_events_channel(self.job.id), orjson.dumps(self.job.meta["progress"])
            )
        except RedisError:
            logger.warning("could not publish the progress of job %s", self.job.id, exc_info=True)


def _fail(job: Job, problem: dict[str, Any]) -> None:
    job.meta["error"] = problem
    job.save_meta()


Compute = Callable[[Job, dict[str, Any], JobRuntime, "ProgressReporter"], tuple[bytes, float]]
"""One job kind's work: validate the stored request, run the engine with the progress reporter, store the
result under `result_key` (and whatever else the kind keeps); returns the result's bytes and the engine's
time in seconds."""


def run_attribution_job(request: dict[str, Any]) -> dict[str, Any]:
    """Run one attribution request; returns where the result was stored.

    Args:
        request: the validated `AttributionRequest`, as JSON-ready data.
    """
    return _run_job(request, _attribution, str(request.get("method", "unknown")))


def run_context_job(request: dict[str, Any]) -> dict[str, Any]:
    """Run one context-attribution (PECoRe) request; returns where the result was stored.

    Args:
        request: the validated `ContextAttributionRequest`, as JSON-ready data.
    """
    return _run_job(request, _context_attribution, str(request.get("attribution_method", "unknown")))


def _run_job(request: dict[str, Any], compute: Compute, method: str) -> dict[str, Any]:
    """What every job kind shares: attempts, heartbeats, metrics, the end announcement and the failure
    handling of `_guarded`."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("a job function must run inside an RQ worker")
    # The job's retry is for a lost worker only, which RQ reads back from Redis when it finds the job
    # abandoned; any failure this process sees and reports would only fail again, so it is never retried.
    job.retries_left = 0
    runtime = _current_runtime()
    # The queued-TTL still stands on the job key; a job that starts late must not expire while it runs.
    # RQ sets the retention TTL when the job ends.
    job.connection.persist(job.key)
    job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
    job.meta.pop("error", None)
    job.save_meta()
    started, status, engine_s = time.perf_counter(), "failed", None
    try:
        with runtime.heartbeats(job):
            payload, engine_s = _guarded(job, request, runtime, compute)
        status = "finished"
    except JobCanceled:
        status = "canceled"
        raise
    finally:
        elapsed = time.perf_counter() - started
        record_job(job.connection, status, method, elapsed, engine_s)
        _announce_end(job)
        fields = {"job_id": job.id, "model": request.get("model"), "method": method, "status": status}
        logger.info(
            "job %s %s in %.2f s", job.id, status, elapsed, extra={**fields, "key": job.meta.get("owner")}
        )
    return {"result_key": result_key(job.id), "bytes": len(payload)}


def _announce_end(job: Job) -> None:
    """Wake the job's long polls (they re-read the job until RQ has recorded how it ended)."""
    try:
        job.connection.publish(job_ended_channel(job.id), b"1")
    except RedisError:
        logger.warning("could not announce the end of job %s", job.id, exc_info=True)


def _result_ttl(job: Job) -> int:
    return job.result_ttl if job.result_ttl and job.result_ttl > 0 else RESULT_TTL_S


def _attribution(
    job: Job, request: dict[str, Any], runtime: JobRuntime, progress: ProgressReporter
) -> tuple[bytes, float]:
    parsed = AttributionRequest.model_validate(request)
    loaded = runtime.model_cache.get(parsed.model)
    attributed = attribute(
        parsed,
        loaded,
        progress,
        result_id=job.id,
        max_cost=runtime.max_job_cost,
        max_granular_bytes=runtime.max_granular_bytes,
    )
    result = attributed.result
    payload = orjson.dumps(result)
    ttl = _result_ttl(job)
    # One transaction: a reader never sees the result without the scores kept for re-aggregation.
    with job.connection.pipeline() as pipe:
        pipe.set(result_key(job.id), payload, ex=ttl)
        pipe.set(scores_key(job.id), attributed.archive, ex=ttl)
        pipe.execute()
    return payload, float(result["info"]["exec_time_s"])


def _context_attribution(
    job: Job, request: dict[str, Any], runtime: JobRuntime, progress: ProgressReporter
) -> tuple[bytes, float]:
    parsed = ContextAttributionRequest.model_validate(request)
    loaded = runtime.model_cache.get(parsed.model)
    started = time.perf_counter()
    result = run_context_attribution(parsed, loaded, progress, job.id, max_cost=runtime.max_job_cost)
    engine_s = time.perf_counter() - started
    payload = orjson.dumps(result)
    # No score archive: re-aggregation applies to attribution jobs only.
    job.connection.set(result_key(job.id), payload, ex=_result_ttl(job))
    return payload, engine_s


def _guarded(job: Job, request: dict[str, Any], runtime: JobRuntime, compute: Compute) -> tuple[bytes, float]:
    """Run `compute` (returns the result's bytes and the engine's time); on failure record the problem in
    the job's meta and re-raise."""
    progress = ProgressReporter(job, runtime.progress_interval_s)
    try:
        progress.check_canceled()
        payload, engine_s = compute(job, request, runtime, progress)
        progress.finish()
    except JobCanceled:
        logger.info("job %s canceled", job.id)
        raise
    except SeqattrError as exc:
        _fail(job, exc.to_problem())
        raise
    except JobTimeoutException:
        _fail(job, JobTimeoutError(job.timeout).to_problem())
        raise
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        # Let go of what the failed job held before the worker takes the next one.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        _fail(job, OutOfMemoryError(type(exc).__name__).to_problem())
        raise
    except Exception as exc:
        _fail(
            job, SeqattrError(f"the worker failed while running the job ({type(exc).__name__})").to_problem()
        )
        raise
    return payload, engine_s
