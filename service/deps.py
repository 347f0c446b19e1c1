"""Typed dependencies: the resources `lifespan` puts on `app.state`, injected into routes.

They are `async` because they do no I/O: FastAPI runs a plain `def` dependency in a worker thread, and that
hand-off costs more than the lookup itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from schemas.defaults import IDEMPOTENCY_KEY_MAX_LENGTH
from schemas.models import ModelEntry
from service.job_store import JobStore
from service.settings import ApiSettings


async def get_app_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_job_store(request: Request) -> JobStore:
    return request.app.state.job_store


async def get_registry(request: Request) -> dict[str, ModelEntry]:
    return request.app.state.registry


SettingsDep = Annotated[ApiSettings, Depends(get_app_settings)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
RegistryDep = Annotated[dict[str, ModelEntry], Depends(get_registry)]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        description="Same key and body: the same job again. Same key, other body: 422.",
    ),
]
"""The `Idempotency-Key` header of a submit."""
