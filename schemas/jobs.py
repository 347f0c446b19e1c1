"""Jobs: the record behind `GET /v1/jobs/{id}` and the pages of `GET /v1/jobs`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobKind = Literal["attribution", "attribute-context"]
JobStatus = Literal["queued", "started", "finished", "failed", "canceled"]

TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed", "canceled"})
"""Statuses a job never leaves."""


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True)

    done: int = Field(0, ge=0, description="Attributed steps computed so far.")
    total: int = Field(0, ge=0, description="Attributed steps in the job; 0 until the worker knows.")


class JobLinks(BaseModel):
    model_config = ConfigDict(frozen=True)

    self: str
    result: str
    view: str | None = Field(None, description="The result's HTML heatmap page, once the job has finished.")


class Job(BaseModel):
    """One attribution job, as stored in Redis and reported by the API."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: JobKind
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    progress: Progress = Progress()
    attempts: int = Field(
        0, ge=0, description="Times a worker started the job (2 after a lost worker's job was re-queued)."
    )
    position: int | None = Field(None, description="0-based place in the model's queue while queued.")
    error: dict[str, Any] | None = Field(None, description="The problem the job failed with.")
    links: JobLinks
    request: dict[str, Any] = Field(description="The validated request, defaults filled in.")


class JobPage(BaseModel):
    """A page of `GET /v1/jobs`, newest first; pass `next_cursor` as `cursor` for the next page."""

    model_config = ConfigDict(frozen=True)

    jobs: list[Job]
    next_cursor: str | None = None
