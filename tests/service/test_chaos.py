"""Faults on real processes: Redis stopped and started again mid-run (503 while it is down, nothing accepted
is lost after), and a worker stopped with SIGTERM in the middle of a job (the job still finishes)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from cli.processes import free_port, stop
from cli.redis_server import EmbeddedRedis
from tests.service.helpers import assert_problem, fast_request, poll, slow_request, submit, wait_terminal
from tests.service.stack import WorkerProcess, stack_env, start_api

pytestmark = pytest.mark.slow


@pytest.fixture
def own_stack(
    tiny_registry: Path, tmp_path: Path
) -> Iterator[tuple[EmbeddedRedis, httpx.Client, dict[str, str]]]:
    """An embedded Redis, an API and (for the test to start) a worker environment, all of the test's own."""
    redis = EmbeddedRedis(tmp_path / "redis", free_port(), quiet=True)
    redis.start()
    env = stack_env(redis.url, tiny_registry, tmp_path, SEQATTR_HEARTBEAT_S="1", SEQATTR_TORCH_THREADS="1")
    api, url = start_api(env)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield redis, client, env
    finally:
        stop(api, "API")
        redis.stop()


def test_redis_outage_is_503_and_loses_no_accepted_job(own_stack) -> None:
    redis, client, env = own_stack
    accepted = [submit(client, fast_request(seed=i))["id"] for i in range(3)]
    redis.stop()  # a clean shutdown flushes the append-only file
    for response in (client.get("/v1/jobs"), client.get(f"/v1/jobs/{accepted[0]}"), client.get("/readyz")):
        problem = assert_problem(response, 503, "not-ready")
        assert "Redis" in problem["detail"] and int(response.headers["retry-after"]) > 0
    assert_problem(client.post("/v1/attributions", json=fast_request()), 503, "not-ready")
    redis.start()
    # The API reconnects by itself; the queued jobs survived the restart, and a worker now runs them all.
    assert {job["id"] for job in client.get("/v1/jobs").json()["jobs"]} >= set(accepted)
    worker = WorkerProcess({**env, "SEQATTR_WORKER_MODELS": "tiny-gpt2"}, Redis.from_url(redis.url))
    worker.ensure()
    try:
        assert [wait_terminal(client, job_id)["status"] for job_id in accepted] == ["finished"] * 3
    finally:
        worker.stop()


def test_sigterm_lets_the_running_job_finish(own_stack) -> None:
    redis, client, env = own_stack
    worker = WorkerProcess({**env, "SEQATTR_WORKER_MODELS": "tiny-llama"}, Redis.from_url(redis.url))
    worker.ensure()
    body = slow_request() | {"inputs": slow_request()["inputs"][:4]}
    job = submit(client, body)
    poll(client, job["id"], lambda state: state["status"] == "started" and state["progress"]["total"] > 0)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)  # RQ's warm shutdown: finish the job, then exit
    assert wait_terminal(client, job["id"])["status"] == "finished"
    assert worker.process.wait(30) == 0
