"""The app factory: `create_app()` builds the FastAPI app; `lifespan` opens Redis and the job store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from starlette.middleware.gzip import GZipMiddleware

from schemas.defaults import GZIP_LEVEL, GZIP_MIN_BYTES, REDIS_COMMAND_TIMEOUT_S, REDIS_CONNECT_TIMEOUT_S
from schemas.logs import TEXT_FORMAT, configure_logging
from schemas.models import load_registry
from schemas.problems import problems_as_sent
from service.auth import ApiKeys
from service.callbacks import CallbackSender
from service.errors import install_error_handlers
from service.job_store import JobStore, Retention
from service.metrics import HttpMetrics, RequestMetrics, ServiceCollector
from service.middleware import BodySizeLimit
from service.rate_limit import RateLimiter
from service.routes import aggregate, attributions, catalogue, context, health, jobs, metrics, ui, views
from service.routes import batches as batch_routes
from service.routes import events as event_routes
from service.settings import ApiSettings, get_settings

logger = logging.getLogger("seqattr.api")

API_VERSION = "1.0.0"
"""Version of the HTTP contract in the OpenAPI document."""


class SeqattrApp(FastAPI):
    """The app; its OpenAPI document declares problem bodies under the media type they are sent as."""

    def openapi(self) -> dict[str, Any]:
        return problems_as_sent(super().openapi())


def operation_id(route: APIRoute) -> str:
    """Stable operation ids: the route's explicit name (generated clients name methods after it)."""
    return route.name


def _configure_logs(settings: ApiSettings) -> None:
    """The API's own loggers (`seqattr.*`) print at INFO beside uvicorn's, in the configured format; with JSON
    logs uvicorn's own lines are JSON too (its access log is replaced by the metrics)."""
    if settings.log_format == "json":
        configure_logging(logging.INFO, "json")
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        return
    root = logging.getLogger("seqattr")
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    _configure_logs(settings)
    app.state.registry = load_registry(settings.models)
    # Bounded waits: a submit talks to Redis on the event loop, so a Redis that stops answering must turn
    # into a 503 within seconds, never a hang.
    connection = Redis.from_url(
        settings.effective_redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_COMMAND_TIMEOUT_S,
        health_check_interval=30,
    )
    retention = Retention(settings.job_timeout_s, settings.queued_job_ttl_s, settings.result_ttl_s)
    events = AsyncRedis.from_url(settings.effective_redis_url, socket_connect_timeout=5)
    app.state.job_store = JobStore(connection, app.state.registry, retention, events)
    app.state.events = events  # event streams subscribe with it
    app.state.callbacks = CallbackSender.start(app.state.job_store, events, settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit, settings.effective_redis_url)
    service_metrics = ServiceCollector(app.state.job_store)
    app.state.metrics_registry.register(service_metrics)
    if not app.state.api_keys.enabled:
        logger.warning(
            "no API keys configured: every request is accepted (set SEQATTR_API_KEYS to require keys)"
        )
    try:
        yield
    finally:
        await app.state.callbacks.stop()
        app.state.metrics_registry.unregister(service_metrics)
        app.state.job_store.close()
        await events.aclose()


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the app; `settings` defaults to the environment's."""
    app = SeqattrApp(
        title="Seqattr",
        summary="Feature attribution for sequence-generation models.",
        version=API_VERSION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings or get_settings()
    app.state.api_keys = ApiKeys(app.state.settings.key_table())
    install_error_handlers(app)
    # Innermost: compresses what the routes answer (streamed results chunk by chunk) when gzip is accepted.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    app.add_middleware(BodySizeLimit, max_bytes=app.state.settings.max_body_bytes)
    app.state.metrics_registry = CollectorRegistry(auto_describe=False)
    app.add_middleware(RequestMetrics, metrics=HttpMetrics(app.state.metrics_registry))
    routers = (attributions, context, jobs, batch_routes, aggregate, views, catalogue, health, metrics, ui)
    for module in routers:
        app.include_router(module.router)
    app.include_router(event_routes.router)
    return app
