"""The Redis layout that the API and the workers share, next to RQ's own `rq:*` keys.

The API enqueues jobs by the job function's dotted path and never imports the worker; both sides read
and write these keys and queues with the same serializer.
"""

from __future__ import annotations

import hashlib

from rq.serializers import JSONSerializer

PREFIX = "seqattr:"
"""Prefix of every key Seqattr writes itself."""

QUEUE_PREFIX = PREFIX + "model:"
"""RQ queue name prefix; each model id has its own queue so a worker takes only the models it holds."""

JOB_INDEX = PREFIX + "jobs"
"""Sorted set of anonymous job ids (no API keys) scored by creation time: `GET /v1/jobs` reads it newest
first; each API key's jobs have an index of their own (`job_index`)."""

ATTRIBUTION_JOB_FUNCTION = "workers.job_function.run_attribution_job"
"""Dotted path of the function a worker runs for an attribution job (a test checks it resolves)."""

CONTEXT_JOB_FUNCTION = "workers.job_function.run_context_job"
"""Dotted path of the function a worker runs for a context-attribution (PECoRe) job (a test checks it
resolves)."""

JOB_FUNCTIONS = {"attribution": ATTRIBUTION_JOB_FUNCTION, "attribute-context": CONTEXT_JOB_FUNCTION}
"""The job function of each job kind (`schemas.jobs.JobKind`)."""

SERIALIZER = JSONSerializer
"""Serializer of every job's arguments, meta and return value: JSON, never pickle."""


def queue_name(model_id: str) -> str:
    """The RQ queue of one model."""
    return QUEUE_PREFIX + model_id


def model_of_queue(name: str) -> str | None:
    """The model id a queue name belongs to, or None for a queue that is not ours."""
    return name.removeprefix(QUEUE_PREFIX) if name.startswith(QUEUE_PREFIX) else None


def result_key(job_id: str) -> str:
    """The orjson bytes of a finished job's result."""
    return f"{PREFIX}result:{job_id}"


def scores_key(job_id: str) -> str:
    """The scores kept beside a finished job's result for re-aggregation (`schemas.scores.archive`)."""
    return f"{PREFIX}scores:{job_id}"


def cancel_key(job_id: str) -> str:
    """Present while a running job has been asked to stop."""
    return f"{PREFIX}cancel:{job_id}"


def tombstone_key(job_id: str) -> str:
    """Outlives the job record so an expired id answers 410 rather than 404."""
    return f"{PREFIX}tombstone:{job_id}"


METRICS_PREFIX = PREFIX + "metrics:"
"""Hashes where workers add up what the API's `GET /metrics` reports for the whole service."""

JOBS_ENDED = METRICS_PREFIX + "jobs_ended"
"""Hash `status|method` -> jobs that ended so (as their worker saw it)."""

JOB_SECONDS = METRICS_PREFIX + "job_seconds"
"""Hash of a histogram of job wall time by method: `method|le` -> count, `method|sum`, `method|count`."""

ENGINE_SECONDS = METRICS_PREFIX + "engine_seconds"
"""Hash of a histogram of engine time by method, laid out as `JOB_SECONDS`."""

MODEL_LOADS = METRICS_PREFIX + "model_loads"
"""Hash `model` -> times a worker loaded it (a worker start, or a GGUF conversion)."""


def job_ended_channel(job_id: str) -> str:
    """Pub/sub channel on which a worker announces that a job's function has returned (long polls wake up)."""
    return f"{PREFIX}ended:{job_id}"


JOB_ENDED_PATTERN = f"{PREFIX}ended:*"
"""Pattern of every job's end channel (`job_ended_channel`): the API's callback sender listens on it."""


def job_events_channel(job_id: str) -> str:
    """Pub/sub channel on which a worker publishes each progress write of a job (`{"done", "total"}` JSON):
    event streams (`GET /v1/jobs/{id}/events`) follow it."""
    return f"{PREFIX}events:{job_id}"


def callback_claim_key(job_id: str) -> str:
    """Set (NX) by the one API process that delivers a job's callback."""
    return f"{PREFIX}callback:{job_id}"


def job_index(owner: str | None) -> str:
    """The index of the jobs created with one API key (by its name), or of anonymous jobs."""
    return JOB_INDEX if owner is None else f"{JOB_INDEX}:key:{owner}"


def idempotency_key(key: str, owner: str | None = None) -> str:
    """Maps a client's `Idempotency-Key` to its job, per API key (hashed: keys are arbitrary text)."""
    scoped = (owner or "") + "\0" + key
    return f"{PREFIX}idempotency:{hashlib.sha256(scoped.encode()).hexdigest()}"


BATCH_INDEX = PREFIX + "batches"
"""Sorted set of anonymous batch ids scored by creation time; each API key has its own (`batch_index`)."""


def batch_key(batch_id: str) -> str:
    """The orjson record of a batch: owner, creation time, template, item count, chunk job ids and ranges."""
    return f"{PREFIX}batch:{batch_id}"


def batch_index(owner: str | None) -> str:
    """The index of the batches created with one API key (by its name), or of anonymous batches."""
    return BATCH_INDEX if owner is None else f"{BATCH_INDEX}:key:{owner}"


def batch_of_key(job_id: str) -> str:
    """The batch a chunk job belongs to (its id), so the end of a chunk can end its batch."""
    return f"{PREFIX}batch-of:{job_id}"
