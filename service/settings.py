"""Settings of the API process, from the environment (`SEQATTR_*`, plus `REDIS_URL`).

`get_settings()` builds them once, on first use; a bad value fails fast with a message naming the variable.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from limits import parse_many
from pydantic import Field, field_validator, model_validator

from schemas.defaults import (
    JOB_TIMEOUT_S,
    LONG_POLL_MAX_S,
    MAX_BODY_BYTES,
    MAX_EXPORT_BYTES,
    MAX_QUEUED_JOBS,
    MIN_API_KEY_LENGTH,
    QUEUED_JOB_TTL_S,
    RATE_LIMIT,
    RESULT_TTL_S,
)
from schemas.settings import CommonSettings

_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ApiSettings(CommonSettings):
    """The HTTP API: how long jobs may wait, run and be kept, and what requests it accepts."""

    job_timeout_s: int = Field(JOB_TIMEOUT_S, ge=1)
    queued_job_ttl_s: int = Field(QUEUED_JOB_TTL_S, ge=1)
    result_ttl_s: int = Field(RESULT_TTL_S, ge=1)
    long_poll_max_s: float = Field(LONG_POLL_MAX_S, ge=0, le=300)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)
    api_keys: str | None = Field(
        None,
        repr=False,
        description="API keys as comma-separated `name:key` pairs; the name appears in logs, never the key.",
    )
    api_keys_file: Path | None = Field(
        None, description="A file of API keys, one `name:key` per line (`#` starts a comment)."
    )
    require_api_keys: bool = Field(
        False, description="Refuse to start without API keys (the container image sets it)."
    )
    rate_limit: str = Field(
        RATE_LIMIT,
        description="Requests per API key (or client address), e.g. '100/second;2000/minute'; 'off'.",
    )
    max_queued_jobs: int = Field(MAX_QUEUED_JOBS, ge=1, le=10_000_000, description="Queued jobs per model.")
    max_export_bytes: int = Field(
        MAX_EXPORT_BYTES,
        ge=1,
        description="Largest result export (GET /v1/jobs/{id}/result) in the chosen format; 413 above it.",
    )
    callback_allowed_hosts: str = Field(
        "",
        description="Hosts (`host` or `host:port`, comma-separated) that jobs' `callback_url` may name; "
        "empty: callbacks are refused.",
    )
    callback_secret: str | None = Field(
        None, repr=False, description="Key of the HMAC-SHA256 signature of callbacks (`Seqattr-Signature`)."
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value.strip().lower() not in ("", "off"):
            try:
                parse_many(value)
            except ValueError as exc:
                raise ValueError(
                    f"SEQATTR_RATE_LIMIT {value!r} is not a rate such as '100/second': {exc}"
                ) from None
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"API keys file not found: {path}")
        return path

    @model_validator(mode="after")
    def _keys_parse(self) -> ApiSettings:
        keys = self.key_table()
        if self.require_api_keys and not keys:
            raise ValueError(
                "SEQATTR_REQUIRE_API_KEYS is set but no key is configured: set SEQATTR_API_KEYS or "
                "SEQATTR_API_KEYS_FILE (or SEQATTR_REQUIRE_API_KEYS=0 to run without keys)"
            )
        if self.callback_hosts() and not self.callback_secret:
            raise ValueError(
                "SEQATTR_CALLBACK_ALLOWED_HOSTS is set but SEQATTR_CALLBACK_SECRET is not: "
                "callbacks are signed with it"
            )
        return self

    def callback_hosts(self) -> list[str]:
        """The allowed callback hosts, lower-cased (empty: callbacks are off)."""
        return [h.strip().lower() for h in self.callback_allowed_hosts.split(",") if h.strip()]

    def key_table(self) -> dict[str, str]:
        """Configured API keys, name -> key (empty: no authentication)."""
        entries = [e for e in (self.api_keys or "").split(",") if e.strip()]
        if self.api_keys_file is not None:
            for line in self.api_keys_file.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    entries.append(line)
        table: dict[str, str] = {}
        for entry in entries:
            name, sep, key = (part.strip() for part in entry.partition(":"))
            if not sep or not _KEY_NAME.fullmatch(name) or len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"API key entry for {name or '?'!r} must be `name:key`, the name made of letters, "
                    f"digits, '_', '-' or '.', the key at least {MIN_API_KEY_LENGTH} characters"
                )
            if name in table:
                raise ValueError(f"API key name {name!r} is given twice")
            table[name] = key
        return table


@functools.cache
def get_settings() -> ApiSettings:
    """The API's settings, read from the environment on first call."""
    return ApiSettings()
