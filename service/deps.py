"""Typed dependencies: the resources `lifespan` puts on `app.state`, injected into routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from schemas.models import ModelEntry
from service.queue import JobQueue
from service.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


def get_registry(request: Request) -> dict[str, ModelEntry]:
    return request.app.state.registry


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
RegistryDep = Annotated[dict[str, ModelEntry], Depends(get_registry)]
