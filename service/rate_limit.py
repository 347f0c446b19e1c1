"""Per-caller request rate limits, kept in Redis so that every API process shares them (the `limits`
library's moving window). The caller is the API key's name, or the client address without keys."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from schemas.errors import RateLimitedError
from service.auth import CallerDep


def _storage_uri(redis_url: str) -> str:
    """The `limits` storage URI of a redis-py URL (`unix://` is `redis+unix://` there)."""
    return (
        "redis+unix://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url
    )


class RateLimiter:
    """Checks each request against every configured rate (`'100/second;2000/minute'`); 'off' disables it."""

    def __init__(self, rates: str, redis_url: str) -> None:
        self.rates: list[RateLimitItem] = [] if rates.strip().lower() in ("", "off") else parse_many(rates)
        self._limiter = (
            MovingWindowRateLimiter(storage_from_string(_storage_uri(redis_url))) if self.rates else None
        )

    @property
    def enabled(self) -> bool:
        return self._limiter is not None

    def hit(self, identity: str) -> None:
        """Count one request of `identity`; RateLimitedError (429) when a rate is exceeded."""
        if self._limiter is None:
            return
        for rate in self.rates:
            if not self._limiter.hit(rate, "seqattr", identity):
                reset = self._limiter.get_window_stats(rate, "seqattr", identity).reset_time
                raise RateLimitedError(str(rate), max(1, math.ceil(reset - time.time())))


async def enforce_rate_limit(request: Request, caller: CallerDep) -> str | None:
    """Count the request against its caller's rate (in a worker thread: this Redis client is synchronous);
    returns the caller. With the limit off it costs nothing, not even a thread hand-off."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if limiter.enabled:
        host = request.client.host if request.client else "?"
        identity = f"key:{caller}" if caller is not None else f"addr:{host}"
        await run_in_threadpool(limiter.hit, identity)
    return caller


RateLimitedCallerDep = Annotated[str | None, Depends(enforce_rate_limit)]
"""The calling key's name, after its request was counted against its rate limit."""
