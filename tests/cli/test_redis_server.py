"""The embedded redis-server: starts, persists to its AOF across restarts, refuses a busy port."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from cli.processes import free_port
from cli.redis_server import EmbeddedRedis, RedisStartError


def test_data_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedRedis(tmp_path, port, quiet=True) as server:
        client = Redis.from_url(server.url)
        client.set("seqattr:test", b"kept")
        client.close()
    assert server.process is None
    with EmbeddedRedis(tmp_path, port, quiet=True) as server:
        assert Redis.from_url(server.url).get("seqattr:test") == b"kept"


def test_busy_port_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "a", free_port(), quiet=True) as server:
        with pytest.raises(RedisStartError, match="already in use"):
            EmbeddedRedis(tmp_path / "b", server.port).start()
