"""Prometheus metrics of one gateway app, in a registry of its own (so that several apps
in one process, as in tests, do not share counters), served at ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets in seconds: a loopback AMQP round trip is around a millisecond, and
#: request/reply calls may take as long as their timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "gateway_http_request_seconds",
            "Time to answer an HTTP request, by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gateway_http_requests_in_flight",
            "HTTP requests being answered",
            registry=self.registry,
        )
        self.outcomes = Counter(
            "gateway_amqp_outcomes",
            "Outcomes of messages sent to the broker, by route",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "gateway_open_streams",
            "Streams open now, by kind (websocket, sse)",
            ["kind"],
            registry=self.registry,
        )
        self.stream_credit = Gauge(
            "gateway_stream_credit",
            "AMQP credit windows of the open streams, summed",
            registry=self.registry,
        )
        self.stream_messages = Counter(
            "gateway_stream_messages",
            "Messages delivered to stream and long-poll clients, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.auth_refusals = Counter(
            "gateway_auth_refusals",
            "Requests and streams refused or closed for want of credentials or grants, by "
            "reason: missing, unknown-key, invalid-token, expired-token, bad-ticket, "
            "unsupported-scheme (401); not-granted, reply-address, origin (403); host "
            "(400); revoked (a stream closed by a reload of the keys)",
            ["reason"],
            registry=self.registry,
        )
        self._by_labels: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.amqp_connected = Gauge(
            "gateway_amqp_connected",
            "1 while the gateway's AMQP connection is open",
            registry=self.registry,
        )

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap an ASGI app to count and time each HTTP request under its route's
        template, not its path (addresses are unbounded; label values must not be)."""

        def measured(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
            if scope["type"] != "http":
                # Handed on, not awaited here: an open WebSocket would hold this frame.
                return app(scope, receive, send)
            return measure(scope, receive, send)

        async def measure(scope: Scope, receive: Receive, send: Send) -> None:
            status = 500

            async def send_and_see(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            started = time.perf_counter()
            self.in_flight.inc()
            try:
                await app(scope, receive, send_and_see)
            finally:
                self.in_flight.dec()
                route = scope.get("route")
                template = getattr(route, "path", "other")
                if template != "/metrics":
                    counter, latency = self._series(scope["method"], template, status)
                    counter.inc()
                    latency.observe(time.perf_counter() - started)

        return measured

    def _series(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of these labels (looking labels up
        costs more than counting, so the pairs are kept)."""
        key = (method, route, status)
        series = self._by_labels.get(key)
        if series is None:
            series = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
            self._by_labels[key] = series
        return series
