"""`python -m service.serve`: the one-command runner behind `make serve`.

Starts the embedded Redis (unless `REDIS_URL` is set), `SEQATTR_WORKERS` worker processes (restarted with
backoff when one dies) and the API on 127.0.0.1:`PORT`; Ctrl-C or SIGTERM stops all of them, workers first
and Redis last.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from pydantic import ValidationError

from service.defaults import SUPERVISOR_BACKOFF_S, SUPERVISOR_STABLE_S
from service.processes import child_env, port_in_use, spawn, stop
from service.redis_server import EmbeddedRedis, RedisStartError
from service.settings import Settings, get_settings

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


class _Stop(Exception):
    """Raised by the signal handler to leave the supervision loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 (signal handler signature)
    raise _Stop(signal.Signals(signum).name)


def serve(settings: Settings) -> int:
    """Run Redis, workers and the API until interrupted; returns the exit code."""
    if port_in_use(settings.host, settings.port):
        logger.error("port %d is in use; set PORT to a free port", settings.port)
        return 1
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    redis: EmbeddedRedis | None = None
    workers: list[Child] = []
    api: subprocess.Popen[bytes] | None = None
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
            worker.start()
        api = spawn(_api_args(settings), env)
        logger.info("API on http://%s:%d (docs at /docs)", settings.host, settings.port)
        while True:
            time.sleep(0.5)
            if api.poll() is not None:
                logger.error("the API exited with code %s; stopping", api.returncode)
                return api.returncode or 1
            now = time.monotonic()
            for worker in workers:
                worker.check(now)
    except _Stop as stop_signal:
        logger.info("%s received; stopping", stop_signal)
        return 0
    except RedisStartError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        # Ignore further Ctrl-C while shutting down, so children are always stopped in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for worker in workers:
            if worker.process is not None:
                stop(worker.process, worker.name)
        if api is not None:
            stop(api, "API")
        if redis is not None:
            redis.stop()
        logger.info("stopped")


def _api_args(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory",
        "--host", settings.host, "--port", str(settings.port),
    ]  # fmt: skip


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = get_settings()
    except ValidationError as exc:
        logger.error("invalid configuration: %s", exc)
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
