"""`seqattr serve` (behind `make serve`): the one-command runner.

Starts the embedded Redis (unless `REDIS_URL` is set), `SEQATTR_WORKERS` worker processes (restarted with
backoff when one dies) and the API on `SEQATTR_HOST`:`PORT`; Ctrl-C or SIGTERM stops all of them, workers
first and Redis last, one log line each, and the runner exits 0.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

from pydantic import ValidationError

from cli.processes import child_env, port_in_use, spawn, stop, stop_all
from cli.redis_server import EmbeddedRedis, RedisStartError
from cli.settings import ServeSettings
from schemas.defaults import SUPERVISOR_BACKOFF_S, SUPERVISOR_POLL_S, SUPERVISOR_STABLE_S
from service.settings import ApiSettings

logger = logging.getLogger("seqattr.serve")


@dataclass
class Child:
    """A supervised worker process and its restart schedule."""

    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = SUPERVISOR_BACKOFF_S[0]
    restart_at: float | None = field(default=None)

    def start(self) -> None:
        self.process = spawn(self.args, self.env)
        self.started_at = time.monotonic()
        self.restart_at = None
        logger.info("%s started (pid %d)", self.name, self.process.pid)

    def check(self, now: float) -> None:
        """Restart the process if it died, after a delay that doubles while it keeps dying quickly."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        if now - self.started_at >= SUPERVISOR_STABLE_S:
            self.backoff_s = SUPERVISOR_BACKOFF_S[0]
        logger.warning(
            "%s exited with code %s; restarting in %.0f s", self.name, self.process.returncode, self.backoff_s
        )
        self.restart_at = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, SUPERVISOR_BACKOFF_S[1])


class StopSignal:
    """Records SIGINT/SIGTERM instead of raising, so a stop never interrupts a start half-way; the runner
    checks it between steps and in its supervision loop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.name = ""

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 (handler signature)
        if not self.event.is_set():
            self.name = signal.Signals(signum).name
            self.event.set()

    def wait(self, timeout_s: float) -> bool:
        return self.event.wait(timeout_s)

    def __bool__(self) -> bool:
        return self.event.is_set()


def _how(code: int | None) -> str:
    # uvicorn re-raises the SIGTERM it handled once it has shut down: that is a clean stop too.
    return f"on {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"


def _stop_part(process: subprocess.Popen[bytes], name: str) -> None:
    logger.info("%s stopped (%s)", name, _how(stop(process, name)))


def serve(settings: ServeSettings, stop_signal: StopSignal | None = None) -> int:
    """Run Redis, workers and the API until a stop signal; returns the exit code."""
    if port_in_use(settings.host, settings.port):
        logger.error("port %d is in use; set PORT to a free port", settings.port)
        return 1
    try:
        keys = ApiSettings().key_table()  # the API's own settings, checked before anything starts
    except (ValidationError, ValueError) as exc:
        logger.error("invalid API settings: %s", exc)
        return 2
    if keys:
        logger.info("API keys required (%d configured: %s)", len(keys), ", ".join(sorted(keys)))
    else:
        logger.warning("no API keys configured: the API accepts every request (set SEQATTR_API_KEYS)")
    stopping = stop_signal or StopSignal()
    stopping.install()
    redis: EmbeddedRedis | None = None
    workers: list[Child] = []
    api: subprocess.Popen[bytes] | None = None
    code = 0
    try:
        if settings.embedded_redis:
            redis = EmbeddedRedis(settings.data_dir / "redis", settings.redis_port)
            redis.start()
        env = child_env(REDIS_URL=settings.effective_redis_url)
        # Load (and on first run convert) the models before taking jobs, so the first job isn't the slow one.
        env.setdefault("SEQATTR_PRELOAD", "1")
        workers = [
            Child(f"worker-{i + 1}", [sys.executable, "-m", "workers"], env) for i in range(settings.workers)
        ]
        for worker in workers:
            if not stopping:
                worker.start()
        if not stopping:
            api = spawn(_api_args(settings), env)
            logger.info("API on http://%s:%d (docs at /docs)", settings.host, settings.port)
        while not stopping.wait(SUPERVISOR_POLL_S):
            if api is not None and api.poll() is not None:
                logger.error("the API exited with code %s; stopping", api.returncode)
                code = api.returncode or 1
                break
            now = time.monotonic()
            for worker in workers:
                worker.check(now)
        if stopping:
            logger.info("%s received; stopping", stopping.name)
    except RedisStartError as exc:
        logger.error("%s", exc)
        code = 1
    finally:
        # Every worker is told to stop at once, each finishing its job within the same grace period.
        running = [(w.process, w.name) for w in workers if w.process is not None]
        for (_, name), exit_code in zip(running, stop_all(running), strict=True):
            logger.info("%s stopped (%s)", name, _how(exit_code))
        if api is not None:
            _stop_part(api, "API")
        if redis is not None:
            redis.stop()
            logger.info("embedded Redis stopped")
        logger.info("stopped")
    return code


def _api_args(settings: ServeSettings) -> list[str]:
    return [
        sys.executable, "-m", "cli", "api",
        "--host", settings.host, "--port", str(settings.port), "--workers", str(settings.api_workers),
    ]  # fmt: skip
