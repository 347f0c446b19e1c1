"""Backpressure: a per-caller request rate (kept in Redis, shared by API processes) and a bound on each
model's queue, both refused with problems that say when to come back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.processes import stop
from tests.service.helpers import UNSERVED_MODEL, assert_problem, queued_request
from tests.service.stack import stack_env, start_api


@pytest.fixture(scope="module")
def limited_api(
    redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = stack_env(
        redis_url,
        tiny_registry,
        tmp_path_factory.mktemp("limits"),
        SEQATTR_RATE_LIMIT="8/minute",
        SEQATTR_MAX_QUEUED_JOBS="2",
    )
    process, url = start_api(env)
    yield url
    stop(process, "API")


def test_a_full_queue_is_a_503_with_retry_after(limited_api: str) -> None:
    with httpx.Client(base_url=limited_api, timeout=30) as client:
        for _ in range(2):
            assert client.post("/v1/attributions", json=queued_request()).status_code == 202
        response = client.post("/v1/attributions", json=queued_request())
        body = assert_problem(response, 503, "queue-full")
        assert UNSERVED_MODEL in body["detail"] and body["max_queued_jobs"] == 2
        assert int(response.headers["retry-after"]) > 0


def test_too_many_requests_are_429s_with_retry_after(limited_api: str) -> None:
    with httpx.Client(base_url=limited_api, timeout=30) as client:
        statuses = [client.get("/v1/methods").status_code for _ in range(12)]
        assert statuses.count(429) >= 4 and statuses[0] == 200
        response = client.get("/v1/models")
        body = assert_problem(response, 429, "rate-limited")
        assert body["limit"] == "8 per 1 minute"
        assert 0 < int(response.headers["retry-after"]) <= 60
        assert client.get("/healthz").status_code == 200  # health checks are never limited
