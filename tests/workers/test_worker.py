"""The worker in-process: `SeqattrWorker` runs real jobs on tiny models (burst mode) against a real Redis;
the job function stores results, progress and problems; `ProgressReporter` throttles and sees cancellation."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis
from rq.job import Job

from cli.processes import free_port
from cli.redis_server import EmbeddedRedis
from schemas.models import load_registry
from schemas.redis_keys import ATTRIBUTION_JOB_FUNCTION, SERIALIZER, cancel_key, queue_name, result_key
from service.job_store import JobStore, Retention
from tests.result_shape import assert_valid_result
from workers.job_function import JobCanceled, ProgressReporter
from workers.model_cache import ModelCache
from workers.worker import SeqattrWorker

MODELS = ["tiny-gpt2", "tiny-bart"]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if os.environ.get("REDIS_URL"):
        client = Redis.from_url(os.environ["REDIS_URL"])
        yield client
        client.close()
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port(), quiet=True) as server:
        client = Redis.from_url(server.url)
        yield client
        client.close()


@pytest.fixture
def clean(redis: Redis) -> Iterator[Redis]:
    redis.flushdb()
    yield redis
    redis.flushdb()


@pytest.fixture(scope="module")
def registry(tiny_registry: Path) -> dict[str, Any]:
    return load_registry([tiny_registry])


@pytest.fixture(scope="module")
def cache(registry: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache(registry, tmp_path_factory.mktemp("cache"))


def make_store(redis: Redis, registry: dict[str, Any], timeout_s: int = 60) -> JobStore:
    return JobStore(redis, registry, Retention(job_timeout_s=timeout_s, queued_ttl_s=600, result_ttl_s=600))


def run_burst(redis: Redis, cache: ModelCache) -> None:
    worker = SeqattrWorker(
        [queue_name(model_id) for model_id in MODELS],
        connection=redis,
        serializer=SERIALIZER,
        model_cache=cache,
        heartbeat_s=0.2,
        progress_interval_s=0,
    )
    worker.work(burst=True, logging_level="WARNING")


def enqueue(store: JobStore, request: dict[str, Any]) -> str:
    job_id = uuid.uuid4().hex
    store.enqueue(job_id, request["model"], "attribution", request)
    return job_id


def test_job_stores_result_bytes_and_progress(
    clean: Redis, registry: dict[str, Any], cache: ModelCache
) -> None:
    store = make_store(clean, registry)
    request = {
        "model": "tiny-bart",
        "inputs": ["The cat sat on the mat."],
        "generation_args": {"max_new_tokens": 4},
    }
    job_id = enqueue(store, request)
    run_burst(clean, cache)
    job = Job.fetch(job_id, connection=clean, serializer=SERIALIZER)
    assert job.get_status() == "finished"
    assert job.meta["progress"]["done"] == job.meta["progress"]["total"] > 0
    assert "error" not in job.meta
    stored = clean.get(result_key(job_id))
    result = orjson.loads(stored)
    assert_valid_result(result)
    assert result["id"] == job_id and result["model"]["is_encoder_decoder"]
    assert orjson.loads(stored)["id"] == job_id  # the id leads the stored document
    assert job.return_value() == {"result_key": result_key(job_id), "bytes": len(stored)}
    assert 0 < clean.ttl(result_key(job_id)) <= 600
    assert 0 < clean.ttl(job.key) <= 600  # retention set by RQ when the job ended


def test_engine_error_is_stored_as_its_problem(
    clean: Redis, registry: dict[str, Any], cache: ModelCache
) -> None:
    store = make_store(clean, registry)
    job_id = enqueue(store, {"model": "tiny-gpt2", "inputs": ["Hello"], "generated_texts": ["Bye"]})
    run_burst(clean, cache)
    job = Job.fetch(job_id, connection=clean, serializer=SERIALIZER)
    assert job.get_status() == "failed"
    assert job.meta["error"]["status"] == 422 and job.meta["error"]["type"].endswith("/invalid-request")
    assert not clean.exists(result_key(job_id))


def test_unexpected_error_is_an_internal_problem(
    clean: Redis, registry: dict[str, Any], cache: ModelCache
) -> None:
    # A request the API would never store: the worker's own validation raises, which is not a SeqattrError.
    store = make_store(clean, registry)
    job_id = enqueue(store, {"model": "tiny-gpt2", "inputs": []})
    run_burst(clean, cache)
    job = Job.fetch(job_id, connection=clean, serializer=SERIALIZER)
    assert job.get_status() == "failed"
    error = job.meta["error"]
    assert error["status"] == 500 and error["type"].endswith("/internal-error")
    assert "ValidationError" in error["detail"] and "Traceback" not in error["detail"]


def test_timeout_is_a_job_timeout_problem(clean: Redis, registry: dict[str, Any], cache: ModelCache) -> None:
    store = make_store(clean, registry, timeout_s=1)
    slow = {
        "model": "tiny-gpt2",
        "method": "integrated_gradients",
        "method_args": {"n_steps": 500},
        "inputs": ["The quick brown fox jumps over the lazy dog."] * 32,
        "generation_args": {"max_new_tokens": 5},
    }
    job_id = enqueue(store, slow)
    start = time.monotonic()
    run_burst(clean, cache)
    assert time.monotonic() - start < 30
    job = Job.fetch(job_id, connection=clean, serializer=SERIALIZER)
    assert job.get_status() == "failed"
    assert job.meta["error"]["type"].endswith("/job-timeout")


def test_canceled_before_start_never_runs(clean: Redis, registry: dict[str, Any], cache: ModelCache) -> None:
    store = make_store(clean, registry)
    job_id = enqueue(store, {"model": "tiny-gpt2", "inputs": ["Hello"]})
    clean.set(cancel_key(job_id), b"1")  # as if the worker had dequeued it just before DELETE
    run_burst(clean, cache)
    job = Job.fetch(job_id, connection=clean, serializer=SERIALIZER)
    assert job.get_status() == "failed" and "error" not in job.meta
    assert job.meta["progress"] == {"done": 0, "total": 0}


def test_heartbeat_ttl_is_short() -> None:
    worker = SeqattrWorker.__new__(SeqattrWorker)
    worker.heartbeat_s = 0.5
    assert worker.get_heartbeat_ttl(None) == 3  # type: ignore[arg-type]


def test_progress_reporter_throttles_and_sees_cancellation(clean: Redis) -> None:
    job = Job.create(ATTRIBUTION_JOB_FUNCTION, connection=clean, serializer=SERIALIZER, id=uuid.uuid4().hex)
    job.save()

    def stored() -> dict[str, int]:
        return Job.fetch(job.id, connection=clean, serializer=SERIALIZER).meta.get("progress")

    report = ProgressReporter(job, min_interval_s=60)
    report(0, 10)
    assert stored() == {"done": 0, "total": 10}
    report(4, 10)  # within the interval: not written
    assert stored() == {"done": 0, "total": 10}
    report(10, 10)  # the last one always is
    assert stored() == {"done": 10, "total": 10}

    report = ProgressReporter(job, min_interval_s=60)
    report(0, 10)
    report(7, 10)
    report.finish()  # the engine's last report was throttled away: finish records done == total
    assert stored() == {"done": 10, "total": 10}

    clean.set(cancel_key(job.id), b"1")
    report = ProgressReporter(job, min_interval_s=0)
    with pytest.raises(JobCanceled):
        report(1, 10)
    report.finish()  # too late to cancel once the result is stored: no error


def test_model_loads_are_reported_once_per_model(registry: dict[str, Any], tmp_path: Path) -> None:
    loads: list[str] = []
    cache = ModelCache(registry, tmp_path, on_load=loads.append)
    first = cache.get("tiny-gpt2")
    assert cache.get("tiny-gpt2") is first
    cache.get("tiny-t5")
    assert loads == ["tiny-gpt2", "tiny-t5"]
