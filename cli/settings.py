"""Settings of the one-command runner (`seqattr serve`, behind `make serve`)."""

from __future__ import annotations

import functools

from pydantic import AliasChoices, Field

from schemas.defaults import DEFAULT_HOST, DEFAULT_PORT
from schemas.settings import CommonSettings


class ServeSettings(CommonSettings):
    """Where the runner puts the API and how many workers it supervises; Redis comes from `CommonSettings`."""

    host: str = Field(DEFAULT_HOST, description="Interface the API listens on.")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias=AliasChoices("SEQATTR_PORT", "PORT"))
    workers: int = Field(1, ge=0, le=64, description="Worker processes the runner starts.")
    api_workers: int = Field(1, ge=1, le=64, description="API processes sharing the port.")


@functools.cache
def get_serve_settings() -> ServeSettings:
    """The runner's settings, read from the environment on first call."""
    return ServeSettings()
