"""`GET /metrics` in Prometheus text format: the API's own requests, plus what the whole service does, read
from Redis at scrape time (queues and their oldest job, live workers, and what workers added up: jobs ended,
job and engine times, model loads), so one scrape of any API process sees every worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.defaults import DURATION_BUCKETS_S
from service.job_store import JobStore


class HttpMetrics:
    """Requests by route template, method and status, and their latency, in one registry per app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "seqattr_http_requests",
            "HTTP requests answered, by route template, method, status and API key name.",
            ["route", "method", "status", "key"],
            registry=registry,
        )
        self.latency = Histogram(
            "seqattr_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 120.0),
        )


class RequestMetrics:
    """ASGI middleware recording every HTTP request in `HttpMetrics` (route templates keep labels few)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            # The key's name, as authentication left it on the request (never the key itself).
            key = scope.get("state", {}).get("caller") or "anonymous"
            self.metrics.requests.labels(template, method, str(status), key).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)


def _histogram(name: str, documentation: str, raw: dict[bytes, bytes]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["method"])
    fields = {key.decode(): float(value) for key, value in raw.items()}
    for method in sorted({key.split("|", 1)[0] for key in fields}):
        buckets = [(str(bound), fields.get(f"{method}|{bound}", 0.0)) for bound in DURATION_BUCKETS_S]
        buckets.append(("+Inf", fields.get(f"{method}|+Inf", 0.0)))
        family.add_metric([method], buckets, fields.get(f"{method}|sum", 0.0))
    return family


class ServiceCollector(Collector):
    """Reads the service-wide numbers from Redis at each scrape."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self.store.metrics_snapshot()
        except RedisError:
            up = GaugeMetricFamily("seqattr_redis_up", "Whether Redis answered the scrape.")
            up.add_metric([], 0)
            yield up
            return
        yield from _families(snapshot)


def _families(snapshot: dict[str, Any]) -> Iterator[Metric]:
    up = GaugeMetricFamily("seqattr_redis_up", "Whether Redis answered the scrape.")
    up.add_metric([], 1)
    yield up
    queued = GaugeMetricFamily("seqattr_queue_jobs", "Jobs waiting in a model's queue.", labels=["model"])
    oldest = GaugeMetricFamily(
        "seqattr_queue_oldest_job_age_seconds", "Age of the oldest job waiting for a model.", labels=["model"]
    )
    for model_id, (length, age) in sorted(snapshot["queues"].items()):
        queued.add_metric([model_id], length)
        oldest.add_metric([model_id], age)
    yield queued
    yield oldest
    workers = GaugeMetricFamily("seqattr_workers_alive", "Workers with a live registration.")
    workers.add_metric([], snapshot["workers"])
    yield workers
    ended = CounterMetricFamily(
        "seqattr_jobs_ended", "Jobs ended, by status and method.", labels=["status", "method"]
    )
    for key, value in sorted(snapshot["jobs_ended"].items()):
        status, _, method = key.decode().partition("|")
        ended.add_metric([status, method], float(value))
    yield ended
    yield _histogram(
        "seqattr_job_duration_seconds", "Wall time of a job in its worker.", snapshot["job_seconds"]
    )
    yield _histogram("seqattr_engine_seconds", "Engine time of a finished job.", snapshot["engine_seconds"])
    loads = CounterMetricFamily("seqattr_model_loads", "Times a worker loaded a model.", labels=["model"])
    for model_id, value in sorted(snapshot["model_loads"].items()):
        loads.add_metric([model_id.decode()], float(value))
    yield loads
