"""A worker that dies mid-job must not leave the job `started` forever."""

from __future__ import annotations

import httpx

from tests.service.helpers import assert_problem, fast_request, poll, slow_request, submit, wait_terminal
from tests.service.stack import WorkerProcess


def test_killed_worker_fails_its_job(client: httpx.Client, worker: WorkerProcess) -> None:
    job = submit(client, slow_request())
    poll(client, job["id"], lambda state: state["status"] == "started" and state["progress"]["total"] > 0)
    worker.kill()
    # Heartbeats stop; once the job's registry entry lapses (about 3 heartbeats), RQ fails it.
    failed = poll(client, job["id"], lambda state: state["status"] != "started", timeout_s=30, interval_s=0.2)
    assert failed["status"] == "failed"
    assert failed["error"]["type"].endswith("/worker-lost")
    assert failed["ended_at"] is not None
    body = assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 409, "job-failed")
    assert body["error"]["type"].endswith("/worker-lost")
    # A new worker takes the next job.
    worker.ensure()
    assert wait_terminal(client, submit(client, fast_request())["id"])["status"] == "finished"
