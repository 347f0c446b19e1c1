"""Processes of the real test stack: the API under uvicorn and `python -m workers`, each a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from redis import Redis

from cli.processes import free_port, stop

REPO = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def flush_jobs(client: Redis) -> None:
    """Delete every key except worker registrations, so the running worker stays visible to /readyz."""
    keep = (b"rq:worker:", b"rq:workers")
    doomed = [key for key in client.scan_iter(count=1000) if not key.startswith(keep)]
    if doomed:
        client.delete(*doomed)


def stack_env(redis_url: str, registry: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQATTR_")}
    env.update(
        REDIS_URL=redis_url,
        SEQATTR_MODELS=str(registry),
        SEQATTR_DATA_DIR=str(data_dir),
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def start_api(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start uvicorn on a free port; returns the process and its base URL once /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory", "--port", str(port),
         "--log-level", "warning"],
        cwd=REPO, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the API exited with code {process.returncode}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 30, "the API to answer /healthz")
    return process, url


class WorkerProcess:
    """The test worker subprocess; `ensure()` (re)starts it and waits until it is registered in Redis."""

    def __init__(self, env: dict[str, str], redis_client: Redis) -> None:
        self.env = env
        self.redis = redis_client
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def name(self) -> str:
        return f"test-worker-{self.starts}"

    def ensure(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.starts += 1
        env = {**self.env, "SEQATTR_WORKER_NAME": self.name}
        self.process = subprocess.Popen([sys.executable, "-m", "workers"], cwd=REPO, env=env)
        key = f"rq:worker:{self.name}"

        def registered() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"the worker exited with code {self.process.returncode}")
            return bool(self.redis.sismember("rq:workers", key) and self.redis.hget(key, "queues"))

        wait_until(registered, 60, "the worker to register")

    def kill(self) -> None:
        """SIGKILL: the worker dies without cleaning up, as on an out-of-memory kill."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, "worker")
