"""The real stack, shared by the service and command tests: an embedded redis-server (or `REDIS_URL`), the
API under uvicorn and a `python -m workers` process, each a subprocess on a free port, started once per
session when a test first asks for them (a pytest plugin, `pytest_plugins` in `tests/conftest.py`).

The worker serves every tiny model except `UNSERVED_MODEL`, so jobs for that one stay queued for as long
as a test needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from cli.processes import free_port, stop
from cli.redis_server import EmbeddedRedis
from tests.service.helpers import HEARTBEAT_S, SERVED_MODELS
from tests.service.stack import WorkerProcess, stack_env, start_api


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`REDIS_URL` if set, else an embedded redis-server on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port(), quiet=True) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def api_url(redis_url: str, tiny_registry: Path, stack_dir: Path) -> Iterator[str]:
    process, url = start_api(stack_env(redis_url, tiny_registry, stack_dir, SEQATTR_LONG_POLL_MAX_S="20"))
    yield url
    stop(process, "API")


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def worker_process(
    redis_url: str, tiny_registry: Path, stack_dir: Path, redis_client: Redis
) -> Iterator[WorkerProcess]:
    env = stack_env(
        redis_url,
        tiny_registry,
        stack_dir,
        SEQATTR_WORKER_MODELS=SERVED_MODELS,
        SEQATTR_HEARTBEAT_S=str(HEARTBEAT_S),
        SEQATTR_PROGRESS_INTERVAL_S="0.05",
        SEQATTR_TORCH_THREADS="1",
        SEQATTR_LOG_LEVEL="WARNING",
    )
    worker = WorkerProcess(env, redis_client)
    yield worker
    worker.stop()


@pytest.fixture
def worker(worker_process: WorkerProcess) -> WorkerProcess:
    """A live worker for the test (restarted if an earlier test killed it)."""
    worker_process.ensure()
    return worker_process
