"""`seqattr serve` (`python -m cli serve`): one command runs Redis, a supervised worker and the API, and
stops them all cleanly on SIGTERM or Ctrl-C (SIGINT), one log line per part and exit code 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from redis import Redis

from cli.processes import free_port, port_in_use
from tests.service.helpers import fast_request, submit, wait_terminal
from tests.service.stack import REPO, stack_env, wait_until


def _worker_pids(redis: Redis) -> set[int]:
    pids = set()
    for key in redis.smembers("rq:workers"):
        pid = redis.hget(key, "pid")
        if pid is not None:
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_runs_restarts_and_stops_everything(tiny_registry: Path, tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    env = stack_env("", tiny_registry, tmp_path / "data", PORT=str(port), SEQATTR_REDIS_PORT=str(redis_port))
    env.pop("REDIS_URL")  # no URL: the runner starts the embedded Redis
    env.update(
        SEQATTR_WORKERS="1", SEQATTR_WORKER_MODELS="tiny-gpt2", SEQATTR_TORCH_THREADS="1", SEQATTR_PRELOAD="1"
    )
    log = tmp_path / "serve.log"
    runner = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve"], cwd=REPO, env=env, stderr=log.open("wb")
    )
    url = f"http://127.0.0.1:{port}"
    redis = Redis(port=redis_port)
    try:

        def ready() -> bool:
            assert runner.poll() is None, f"the runner exited with code {runner.returncode}"
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, "the runner's API to be ready", interval_s=0.2)
        [first_pid] = wait_until(lambda: _worker_pids(redis), 10, "the worker's pid")

        # A worker that dies is restarted.
        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: _worker_pids(redis) - {first_pid}, 60, "a new worker", interval_s=0.2)
        with httpx.Client(base_url=url, timeout=30) as client:
            assert wait_terminal(client, submit(client, fast_request())["id"])["status"] == "finished"
        worker_pids = _worker_pids(redis) - {first_pid}
    finally:
        redis.close()
        runner.send_signal(signal.SIGTERM)
        code = runner.wait(60)
    assert code == 0
    _assert_clean_stop(log.read_text(), "SIGTERM", ["worker-1", "API", "embedded Redis"])
    assert not any(_alive(pid) for pid in worker_pids)
    assert not port_in_use("127.0.0.1", port) and not port_in_use("127.0.0.1", redis_port)
    assert (tmp_path / "data" / "redis" / "appendonly.aof").is_file()


def _assert_clean_stop(log: str, signal_name: str, parts: list[str]) -> None:
    assert "Traceback" not in log, log
    assert f"{signal_name} received; stopping" in log
    for part in parts:
        assert f"{part} stopped" in log, log


def test_ctrl_c_stops_the_runner_cleanly(tiny_registry: Path, tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    env = stack_env("", tiny_registry, tmp_path / "data", PORT=str(port), SEQATTR_REDIS_PORT=str(redis_port))
    env.pop("REDIS_URL")
    env["SEQATTR_WORKERS"] = "0"  # the API and Redis alone: quick to start
    log = tmp_path / "serve.log"
    runner = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve"], cwd=REPO, env=env, stderr=log.open("wb")
    )

    def healthy() -> bool:
        assert runner.poll() is None, f"the runner exited with code {runner.returncode}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 60, "the runner's API", interval_s=0.2)
    finally:
        runner.send_signal(signal.SIGINT)
        code = runner.wait(60)
    assert code == 0
    _assert_clean_stop(log.read_text(), "SIGINT", ["API", "embedded Redis"])
    assert not port_in_use("127.0.0.1", port) and not port_in_use("127.0.0.1", redis_port)


def test_serve_refuses_a_busy_port(tiny_registry: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = stack_env("", tiny_registry, tmp_path, PORT=str(busy.getsockname()[1]))
        env.pop("REDIS_URL")
        done = subprocess.run(
            [sys.executable, "-m", "cli", "serve"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "in use" in done.stderr
