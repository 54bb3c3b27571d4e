"""Prometheus metrics of one app, in its own ``CollectorRegistry`` (several apps per process
in tests), and the ASGI middleware that counts requests by route template and status."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.jobs import JobState

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "avid_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "avid_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
        )
        self.batch_clips = Histogram(
            "avid_batch_clips",
            "clips per model forward pass",
            ["modality"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "avid_batcher_queue_clips", "clips waiting for a forward pass", registry=r
        )
        self.index_vectors = Gauge(
            "avid_index_vectors", "searchable window vectors", ["modality"], registry=r
        )
        self.index_items = Gauge("avid_index_items", "items of the serving model", registry=r)
        self.stale_items = Gauge(
            "avid_index_stale_items", "items of another model version", registry=r
        )
        self.jobs = Gauge("avid_jobs", "background jobs held, by state", ["state"], registry=r)
        self._workers_by_model: Callable[[], Mapping[str, int]] | None = None

    def observe_batch(self, modality: str, clips: int) -> None:
        self.batch_clips.labels(modality=modality).observe(clips)

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def track_broker_queue(self, depth: Callable[[], float]) -> None:
        """The distributed mode's queue: tasks waiting in the broker for a worker."""
        gauge = Gauge(
            "avid_broker_queue_tasks",
            "embedding tasks waiting in the broker for a worker (NaN: broker unreachable)",
            registry=self.registry,
        )
        gauge.set_function(depth)

    def track_workers(self, by_model: Callable[[], Mapping[str, int]]) -> None:
        """The distributed mode's live workers (heartbeats in Redis), by model version."""
        self._workers_by_model = by_model
        self.workers = Gauge(
            "avid_workers",
            "live `avid worker`s (current heartbeat), by the model version they embed with",
            ["model_version"],
            registry=self.registry,
        )

    def render(self, index_stats: Mapping[str, Any], job_counts: Mapping[JobState, int]) -> bytes:
        """The Prometheus text exposition, with the index and job gauges refreshed."""
        for modality, stats in index_stats.get("modalities", {}).items():
            self.index_vectors.labels(modality=modality).set(stats.get("vectors", 0))
        self.index_items.set(index_stats.get("items", 0))
        self.stale_items.set(index_stats.get("stale_items", 0))
        for state, n in job_counts.items():
            self.jobs.labels(state=state).set(n)
        if self._workers_by_model is not None:
            self.workers.clear()
            for version, n in self._workers_by_model().items():
                self.workers.labels(model_version=version).set(n)
        return generate_latest(self.registry)


def _route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The matched route's path template (bounded label values), e.g. ``/items/{item_id}``.

    The router records the route it picked in the (shared) scope. A request answered before
    routing (the request guard's 401 and 413) is matched against ``routes`` here, so it
    counts under its real route too."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and times it."""

    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, routes: Sequence[BaseRoute] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope, self.routes)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(
                time.perf_counter() - start
            )
