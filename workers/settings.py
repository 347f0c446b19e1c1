"""Settings of a worker process (`python -m workers`), read from the environment once, on first use."""

from __future__ import annotations

import functools
import logging
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from schemas.defaults import (
    DEFAULT_MAX_GRANULAR_BYTES,
    MAX_JOB_COST,
    PROGRESS_MIN_INTERVAL_S,
    WORKER_HEARTBEAT_S,
    WORKER_MAINTENANCE_S,
    WORKER_TTL_S,
)
from schemas.settings import CommonSettings


class WorkerSettings(CommonSettings):
    """Which models a worker serves and how it runs; Redis and the registry come from `CommonSettings`."""

    worker_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Model ids to serve, comma-separated; empty means every registry id.",
    )
    preload: bool = Field(False, description="Load the served models before taking jobs.")
    torch_threads: int | None = Field(
        None, ge=1, le=1024, description="torch.set_num_threads; unset: torch's."
    )
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    heartbeat_s: float = Field(WORKER_HEARTBEAT_S, gt=0, le=300)
    progress_interval_s: float = Field(PROGRESS_MIN_INTERVAL_S, ge=0, le=60)
    worker_ttl_s: int = Field(WORKER_TTL_S, ge=20, le=3600)
    maintenance_s: int = Field(WORKER_MAINTENANCE_S, ge=1)
    worker_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    log_level: str = "INFO"
    max_job_cost: int = Field(
        MAX_JOB_COST, ge=1, description="Most token-steps one job may cost (422 past it)."
    )
    max_granular_bytes: int = Field(
        DEFAULT_MAX_GRANULAR_BYTES,
        ge=0,
        description="Most bytes of unreduced scores kept for one job (`aggregation.keep_granular`).",
    )

    @field_validator("worker_models", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        level = level.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"unknown log level {level!r}")
        return level


@functools.cache
def get_worker_settings() -> WorkerSettings:
    """The worker's settings, read from the environment on first call."""
    return WorkerSettings()
