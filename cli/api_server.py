"""`seqattr api`: the HTTP API under uvicorn, in one or several processes sharing one listening socket.

The socket is made here, as a TCP socket proper (`IPPROTO_TCP`), because asyncio turns Nagle's algorithm
off (`TCP_NODELAY`) only on connections of such sockets: uvicorn's own socket for `--workers` is not one,
and there every keep-alive request after the first waits 40 ms for a delayed ACK.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

APP = "service.main:create_app"
"""The app factory every API process runs."""


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) that child processes inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_api(
    host: str, port: int, workers: int = 1, log_level: str = "info", access_log: bool = True
) -> None:
    """Run the API until interrupted: one process, or a supervisor and `workers` processes."""
    config = uvicorn.Config(
        APP, factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log
    )
    sock = tcp_socket(host, port)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
