"""Service tests run on the real stack (`tests/stack_fixtures.py`); Redis job state is flushed around every
test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from tests.service.stack import flush_jobs


@pytest.fixture(autouse=True)
def clean_redis(redis_client: Redis) -> Iterator[None]:
    flush_jobs(redis_client)
    yield
    flush_jobs(redis_client)
