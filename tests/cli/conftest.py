"""Fixtures of the `seqattr` command's tests: the real stack comes from `tests/stack_fixtures.py` (the same
processes as the service tests'), plus a runner for the command in this process.

The service tests' per-test flush (`clean_redis`) is autouse there; here it is the explicit `clean_jobs`, so
the runner's own tests in this folder (`test_serve.py`, `test_redis_server.py`) start no Redis they don't use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from typer.testing import CliRunner

from tests.service.stack import flush_jobs


@pytest.fixture
def clean_jobs(redis_client: Redis) -> Iterator[None]:
    """Redis without jobs before and after the test (workers stay registered)."""
    flush_jobs(redis_client)
    yield
    flush_jobs(redis_client)


@pytest.fixture
def runner() -> CliRunner:
    """Runs `seqattr` in this process; a wide terminal, so that tables are not cut."""
    return CliRunner(env={"COLUMNS": "200", "SEQATTR_URL": None, "SEQATTR_API_KEY": None})
