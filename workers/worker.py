"""The Seqattr worker: an RQ `SimpleWorker` (jobs run in the worker process, so loaded models stay loaded)
that heartbeats while a job runs, so a worker that dies mid-job is noticed within seconds.

It extends RQ through one overridden method (`get_heartbeat_ttl`) and one public call
(`maintain_heartbeats`); `check_rq_interface` verifies both at start-up, so an RQ upgrade that changes
them stops the worker with a clear message instead of silently ending the heartbeats.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import rq
from rq.job import Job
from rq.worker import BaseWorker, SimpleWorker

from schemas.defaults import (
    DEFAULT_MAX_GRANULAR_BYTES,
    MAX_JOB_COST,
    PROGRESS_MIN_INTERVAL_S,
    WORKER_HEARTBEAT_MISSES,
    WORKER_HEARTBEAT_S,
)
from workers import job_function
from workers.model_cache import ModelCache

RQ_INTERFACE: dict[str, tuple[str, ...]] = {
    "get_heartbeat_ttl": ("self", "job"),
    "maintain_heartbeats": ("self", "job"),
}
"""RQ worker methods Seqattr overrides or calls, with the parameters it was written for (rq 2.12)."""

RQ_TTL_CALLERS = ("prepare_job_execution", "maintain_heartbeats")
"""RQ methods that must keep asking `get_heartbeat_ttl`, or the short heartbeat TTL is never applied."""


class RQInterfaceChanged(RuntimeError):
    """The installed RQ no longer has the worker interface `SeqattrWorker` relies on."""


def check_rq_interface() -> None:
    """Raise `RQInterfaceChanged` when the installed RQ's worker methods differ from `RQ_INTERFACE`."""
    problems = []
    for name, expected in RQ_INTERFACE.items():
        method = getattr(SimpleWorker, name, None)
        actual = tuple(inspect.signature(method).parameters) if method is not None else None
        if actual != expected:
            problems.append(f"SimpleWorker.{name}{actual or ' is missing'} (expected {expected})")
    for name in RQ_TTL_CALLERS:
        if "self.get_heartbeat_ttl(" not in inspect.getsource(getattr(BaseWorker, name)):
            problems.append(f"BaseWorker.{name} no longer calls get_heartbeat_ttl")
    if problems:
        raise RQInterfaceChanged(
            f"rq {rq.__version__} changed what SeqattrWorker relies on: {'; '.join(problems)}. "
            "Install the rq version pinned in pyproject.toml or update workers/worker.py."
        )


class SeqattrWorker(SimpleWorker):
    """A SimpleWorker holding one `ModelCache`, with a heartbeat thread during each job.

    RQ's forking worker heartbeats from the parent while the child works; a SimpleWorker has no parent,
    so RQ gives a running job's started-registry entry a TTL of the whole job timeout. Here a thread
    refreshes it every `heartbeat_s` with a short TTL instead: if the process dies, the entry lapses after
    `WORKER_HEARTBEAT_MISSES` beats and RQ's registry cleanup fails the job (the API then reports it
    `failed` with a worker-lost problem). The job function runs the thread (`heartbeats`) for exactly as
    long as it runs, so no late beat re-creates registry entries RQ removes when the job ends.

    Args:
        model_cache: the models this worker serves, loaded on first use.
        heartbeat_s: seconds between heartbeats while a job runs.
        progress_interval_s: least time between two progress writes of a job.
        max_job_cost: most token-steps a job may cost.
        max_granular_bytes: most bytes of unreduced scores kept for one job.
        *args, **kwargs: passed to `SimpleWorker`.
    """

    def __init__(
        self,
        *args: Any,
        model_cache: ModelCache,
        heartbeat_s: float = WORKER_HEARTBEAT_S,
        progress_interval_s: float = PROGRESS_MIN_INTERVAL_S,
        max_job_cost: int = MAX_JOB_COST,
        max_granular_bytes: int = DEFAULT_MAX_GRANULAR_BYTES,
        **kwargs: Any,
    ):
        check_rq_interface()
        kwargs.setdefault("job_monitoring_interval", max(1, math.ceil(heartbeat_s)))
        super().__init__(*args, **kwargs)
        self.model_cache = model_cache
        self.heartbeat_s = heartbeat_s
        job_function.configure(
            job_function.JobRuntime(
                model_cache,
                progress_interval_s=progress_interval_s,
                max_job_cost=max_job_cost,
                max_granular_bytes=max_granular_bytes,
                heartbeats=self.heartbeats,
            )
        )

    def get_heartbeat_ttl(self, job: Job) -> int:  # noqa: ARG002 (same for every job)
        """How long a running job's registry entry lives without a fresh heartbeat."""
        return math.ceil(self.heartbeat_s * WORKER_HEARTBEAT_MISSES) + 1

    @contextmanager
    def heartbeats(self, job: Job) -> Iterator[None]:
        """Heartbeat `job` from a thread for the duration of the block."""
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(job, stop), name="rq-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _beat(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                self.maintain_heartbeats(job)
            except Exception:  # a missed beat is not fatal; the next one may succeed
                self.log.warning("Worker %s: heartbeat for job %s failed", self.name, job.id, exc_info=True)
