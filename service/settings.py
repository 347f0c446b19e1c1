"""Settings of the API process, from the environment (`SEQATTR_*`, plus `REDIS_URL`).

`get_settings()` builds them once, on first use; a bad value fails fast with a message naming the variable.
"""

from __future__ import annotations

import functools

from pydantic import Field

from schemas.defaults import JOB_TIMEOUT_S, LONG_POLL_MAX_S, MAX_BODY_BYTES, QUEUED_JOB_TTL_S, RESULT_TTL_S
from schemas.settings import CommonSettings


class ApiSettings(CommonSettings):
    """The HTTP API: how long jobs may wait, run and be kept, and what requests it accepts."""

    job_timeout_s: int = Field(JOB_TIMEOUT_S, ge=1)
    queued_job_ttl_s: int = Field(QUEUED_JOB_TTL_S, ge=1)
    result_ttl_s: int = Field(RESULT_TTL_S, ge=1)
    long_poll_max_s: float = Field(LONG_POLL_MAX_S, ge=0, le=300)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)


@functools.cache
def get_settings() -> ApiSettings:
    """The API's settings, read from the environment on first call."""
    return ApiSettings()
