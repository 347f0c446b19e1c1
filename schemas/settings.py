"""Settings every Seqattr process reads (the API, the workers and the runner): where Redis is, where data
lives and which model registry files exist. Each process extends `CommonSettings` with its own.

Nothing is read at import: each process builds its settings once, on first use, and fails fast with a
message naming the bad variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.defaults import DEFAULT_DATA_DIR, EMBEDDED_REDIS_PORT, MODEL_CACHE_SUBDIR
from schemas.logs import LogFormat

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""URL schemes redis-py's `Redis.from_url` understands."""


def redacted_url(url: str) -> str:
    """The URL with its password (if any) replaced by `***`, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


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
    log_format: LogFormat = Field("text", description="Log lines as plain text or one JSON object per line.")
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
            shown = redacted_url(url)
            raise ValueError(f"REDIS_URL must start with one of {', '.join(REDIS_SCHEMES)}://, got {shown!r}")
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

    @property
    def redis_url_for_logs(self) -> str:
        """The Redis URL without its password."""
        return redacted_url(self.effective_redis_url)

    @property
    def model_cache_dir(self) -> Path:
        """Where converted model weights are cached (workers, tests and the benchmark share it)."""
        return self.data_dir / MODEL_CACHE_SUBDIR
