"""Child-process helpers shared by the runner and the embedded Redis."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys

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
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s (pid %d) did not stop within %.0f s; killing it", name, process.pid, grace_s)
        process.kill()
        return process.wait()


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
