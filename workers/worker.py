"""The Seqattr worker: an RQ `SimpleWorker` (jobs run in the worker process, so loaded models stay loaded)
that keeps heartbeating while a job runs, so a worker that dies mid-job is noticed within seconds."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from rq.job import Job
from rq.queue import Queue
from rq.worker import SimpleWorker, WorkerStatus

from service.defaults import PROGRESS_MIN_INTERVAL_S, WORKER_HEARTBEAT_MISSES, WORKER_HEARTBEAT_S
from workers import jobs

if TYPE_CHECKING:
    from workers.model_cache import ModelCache


class SeqattrWorker(SimpleWorker):
    """A SimpleWorker holding one `ModelCache`, with a heartbeat thread during each job.

    RQ's forking worker heartbeats from the parent while the child works; a SimpleWorker has no parent,
    so RQ gives a running job's started-registry entry a TTL of the whole job timeout. Here a thread
    refreshes it every `heartbeat_s` with a short TTL instead: if the process dies, the entry lapses after
    `WORKER_HEARTBEAT_MISSES` beats and RQ's registry cleanup fails the job (the API then reports it
    `failed` with a worker-lost problem).

    Args:
        model_cache: the models this worker serves, loaded on first use.
        heartbeat_s: seconds between heartbeats while a job runs.
        progress_interval_s: least time between two progress writes of a job.
        *args, **kwargs: passed to `SimpleWorker`.
    """

    def __init__(
        self,
        *args: Any,
        model_cache: ModelCache,
        heartbeat_s: float = WORKER_HEARTBEAT_S,
        progress_interval_s: float = PROGRESS_MIN_INTERVAL_S,
        **kwargs: Any,
    ):
        kwargs.setdefault("job_monitoring_interval", max(1, math.ceil(heartbeat_s)))
        super().__init__(*args, **kwargs)
        self.model_cache = model_cache
        self.heartbeat_s = heartbeat_s
        self._beat_stop: threading.Event | None = None
        self._beat_thread: threading.Thread | None = None
        jobs.configure(model_cache, progress_interval_s)

    def get_heartbeat_ttl(self, job: Job) -> int:  # noqa: ARG002 (same for every job)
        """How long a running job's registry entry lives without a fresh heartbeat."""
        return math.ceil(self.heartbeat_s * WORKER_HEARTBEAT_MISSES) + 1

    def execute_job(self, job: Job, queue: Queue) -> None:
        self.prepare_execution(job)
        self._start_heartbeats(job)
        try:
            self.perform_job(job, queue)
        finally:
            self._stop_heartbeats()
        self.set_state(WorkerStatus.IDLE)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        # The queued-TTL still stands on the job key; a job that starts late must not expire while it runs.
        # RQ sets the retention TTL when the job ends.
        self.connection.persist(job.key)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # The job function has returned or raised: stop beating before RQ records the outcome, so no late
        # beat re-creates the registry entries RQ removes.
        self._stop_heartbeats()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def _start_heartbeats(self, job: Job) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(job, stop), name="rq-heartbeat", daemon=True)
        self._beat_stop, self._beat_thread = stop, thread
        thread.start()

    def _stop_heartbeats(self) -> None:
        if self._beat_stop is not None and self._beat_thread is not None:
            self._beat_stop.set()
            self._beat_thread.join()
        self._beat_stop = self._beat_thread = None

    def _beat(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                self.maintain_heartbeats(job)
            except Exception:  # a missed beat is not fatal; the next one may succeed
                self.log.warning("Worker %s: heartbeat for job %s failed", self.name, job.id, exc_info=True)
