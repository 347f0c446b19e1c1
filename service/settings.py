"""Settings of the API process and the runner, from the environment (`SEQATTR_*`, plus `REDIS_URL`, `PORT`).

Nothing is read at import: `get_settings()` builds the settings once, on first use, and fails fast with a
message naming the bad variable.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.defaults import (
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EMBEDDED_REDIS_PORT,
    JOB_TIMEOUT_S,
    LONG_POLL_MAX_S,
    MAX_BODY_BYTES,
    QUEUED_JOB_TTL_S,
    RESULT_TTL_S,
)

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""URL schemes redis-py's `Redis.from_url` understands."""


class CommonSettings(BaseSettings):
    """What the API, the runner and the workers all need: where Redis is and which models exist."""

    model_config = SettingsConfigDict(env_prefix="SEQATTR_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SEQATTR_REDIS_URL", "REDIS_URL"),
        description="Redis to use; unset means the embedded redis-server on `redis_port`.",
    )
    redis_port: int = Field(EMBEDDED_REDIS_PORT, ge=1, le=65535, description="Port of the embedded Redis.")
    data_dir: Path = Field(Path(DEFAULT_DATA_DIR), description="Embedded Redis files and converted weights.")
    models: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra model registry files, separated by ':' (os.pathsep)."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, url: str | None) -> str | None:
        if not url:
            return None
        scheme = urlsplit(url).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(f"REDIS_URL must start with one of {', '.join(REDIS_SCHEMES)}://, got {url!r}")
        return url

    @field_validator("models", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part) for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _registry_files_exist(cls, paths: list[Path]) -> list[Path]:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"model registry file(s) not found: {', '.join(missing)}")
        return paths

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis URL is given and the embedded server is used."""
        return self.redis_url is None

    @property
    def effective_redis_url(self) -> str:
        """The URL clients connect to: the given one, or the embedded server's."""
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"


class Settings(CommonSettings):
    """The API process and the one-command runner (`python -m service.serve`)."""

    host: str = Field(DEFAULT_HOST, description="Interface the API listens on.")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias=AliasChoices("SEQATTR_PORT", "PORT"))
    workers: int = Field(1, ge=0, le=64, description="Worker processes the runner starts.")
    job_timeout_s: int = Field(JOB_TIMEOUT_S, ge=1)
    queued_job_ttl_s: int = Field(QUEUED_JOB_TTL_S, ge=1)
    result_ttl_s: int = Field(RESULT_TTL_S, ge=1)
    long_poll_max_s: float = Field(LONG_POLL_MAX_S, ge=0, le=300)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first call."""
    return Settings()
