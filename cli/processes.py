"""Child-process helpers shared by the runner and the embedded Redis."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from schemas.defaults import SHUTDOWN_GRACE_S

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn`: on Linux, SIGTERM the child when its parent dies (a killed runner leaves no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C reaches only the runner, which stops children in order)."""
    return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509


def stop(process: subprocess.Popen[bytes], name: str, grace_s: float = SHUTDOWN_GRACE_S) -> int | None:
    """SIGTERM, then SIGKILL after `grace_s`; returns the exit code."""
    return stop_all([(process, name)], grace_s)[0]


def stop_all(
    processes: list[tuple[subprocess.Popen[bytes], str]], grace_s: float = SHUTDOWN_GRACE_S
) -> list[int | None]:
    """SIGTERM to every process at once (one signal each: a second one would make an RQ worker abandon its
    job), then wait for them together, SIGKILL what is left after `grace_s`; returns the exit codes."""
    for process, _ in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    codes: list[int | None] = []
    for process, name in processes:
        try:
            codes.append(process.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %d) did not stop within %.0f s; killing it", name, process.pid, grace_s)
            process.kill()
            codes.append(process.wait())
    return codes


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def child_env(**overrides: str) -> dict[str, str]:
    """The runner's environment plus `overrides` (children find `service`/`workers` from the same folder)."""
    return {**os.environ, **overrides}
