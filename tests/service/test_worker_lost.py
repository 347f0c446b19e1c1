"""A worker that dies mid-job must not leave the job `started` forever: the job goes back on its queue once,
and fails with a worker-lost problem if its worker dies again."""

from __future__ import annotations

import httpx

from tests.service.helpers import assert_problem, fast_request, poll, slow_request, submit, wait_terminal
from tests.service.stack import WorkerProcess


def _running(state: dict) -> bool:
    return state["status"] == "started" and state["progress"]["total"] > 0


def test_a_lost_job_is_requeued_once_then_failed(client: httpx.Client, worker: WorkerProcess) -> None:
    job = submit(client, slow_request())
    poll(client, job["id"], _running)
    worker.kill()
    # Heartbeats stop; once the job's registry entry lapses (about 3 heartbeats), RQ re-queues it.
    requeued = poll(
        client, job["id"], lambda state: state["status"] != "started", timeout_s=30, interval_s=0.2
    )
    assert requeued["status"] == "queued" and requeued["error"] is None and requeued["attempts"] == 1
    # A new worker takes it again; it dies too: now the job fails as worker-lost.
    worker.ensure()
    poll(client, job["id"], _running)
    worker.kill()
    failed = poll(client, job["id"], lambda state: state["status"] != "started", timeout_s=30, interval_s=0.2)
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert failed["error"]["type"].endswith("/worker-lost")
    assert failed["ended_at"] is not None
    body = assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 409, "job-failed")
    assert body["error"]["type"].endswith("/worker-lost")
    # A new worker takes the next job.
    worker.ensure()
    assert wait_terminal(client, submit(client, fast_request())["id"])["status"] == "finished"


def test_a_failing_job_is_not_retried(client: httpx.Client, worker: WorkerProcess) -> None:
    assert worker.process is not None
    job = submit(client, fast_request(generated_texts=["Something else entirely"]))
    failed = wait_terminal(client, job["id"])
    assert failed["status"] == "failed" and failed["error"]["status"] == 422
    assert failed["attempts"] == 1  # the retry kept for lost workers was not spent on it
