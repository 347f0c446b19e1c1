"""Bodies of the health endpoints: `GET /healthz` and `GET /readyz`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Redis answers and at least one worker is alive."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ready"] = "ready"
    workers: int = Field(description="Live workers.")
    models_without_workers: list[str] = Field(
        description="Models no live worker listens for: their jobs wait."
    )
