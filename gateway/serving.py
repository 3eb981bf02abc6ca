"""How uvicorn serves the gateway: its options, taken from the settings, and the HTTP/1.1
protocol with the limits a server facing untrusted clients needs.

- The request head (request line and headers) is bounded by `Settings.max_header_size`
  (16 KiB by default, as Node.js and h11; nginx allows 4 x 8 KiB, Apache 8 KiB a field
  and 100 fields): a longer head is answered 431 and the connection closed, having cost
  at most that much memory. uvicorn's parsers do not bound it well enough: httptools,
  its fastest, not at all, and h11 only a head still unfinished at the end of a read,
  and h11 serves about 40% fewer requests a second. So `GuardedHttpToolsProtocol`
  counts the bytes of each head and hands httptools no more than the limit. The count
  of header fields is bounded by that size too; the app refuses more than
  `Settings.max_headers` (see `gateway.app.RequestLimits`).
- uvicorn has no read timeouts: its keep-alive timer is disarmed by the first byte of
  the next request, so a client sending one byte now and then holds a connection
  forever (slowloris). The protocol adds them: the head must be complete within
  `Settings.header_timeout` of the connection's opening or the previous answer (then
  408 and close, as Node.js's headersTimeout and Apache's mod_reqtimeout do), and a
  body may pause no longer than `Settings.body_timeout` between two reads (nginx's
  client_body_timeout), unless the gateway itself stopped reading it.
- Idle keep-alive connections close after `Settings.keep_alive_timeout` (uvicorn's
  timer); WebSocket messages from clients are bounded by `Settings.max_ws_message`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import SHUTDOWN_GRACE
from gateway.settings import Settings

log = logging.getLogger(__name__)


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app` under `settings` (`options` add to it)."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.keep_alive_timeout,
        ws_max_size=settings.max_ws_message,
        # The sans-I/O protocol keeps its pings on timers, not tasks: the least memory
        # per idle WebSocket of uvicorn's implementations.
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_per_message_deflate=settings.ws_compression,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        **options,
    )


def guarded_protocol(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """`GuardedHttpToolsProtocol` with these limits (uvicorn takes a protocol class)."""
    limits = {
        "max_head": settings.max_header_size,
        "header_timeout": settings.header_timeout,
        "body_timeout": settings.body_timeout,
    }
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), limits)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a bound on the size of each request head (431),
    a deadline for each head (408), and a timeout for pauses in a request body."""

    max_head = 16 * 1024
    header_timeout = 20.0
    body_timeout = 20.0

    #: Bytes of the current request head received so far; None while no head is read.
    _head_bytes: int | None = 0
    _reading: str | None = None  # "head" or "body" while a timer watches the client
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head", self.header_timeout)

    def data_received(self, data: bytes) -> None:
        counted = self._head_bytes
        if counted is not None and counted + len(data) > self.max_head:
            # Parse no more than the limit allows: a head still unfinished there is refused
            # before the parser has buffered more of it.
            room = self.max_head - counted
            super().data_received(data[:room])
            if self._head_bytes is not None:
                detail = f"the request line and headers are over the limit of {self.max_head} bytes"
                self._answer_and_close(431, "Request header fields too large", detail)
                return
            data = data[room:]
        elif counted is not None:
            self._head_bytes = counted + len(data)
        if data and not self.transport.is_closing():
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._arm("body", self.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm("body", self.body_timeout)

    def on_message_complete(self) -> None:
        # The app answers now; what the client sends next is the next request's head.
        self._head_bytes = 0
        self._unwatch()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm("head", self.header_timeout)

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol owns the connection from now on, with its own pings.
        self._unwatch()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._unwatch()
        super().connection_lost(exc)

    def _arm(self, reading: str, timeout: float) -> None:
        self._unwatch()
        self._reading = reading
        self._timer = self.loop.call_later(timeout, self._timed_out)

    def _unwatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._reading = None

    def _timed_out(self) -> None:
        reading, self._timer = self._reading, None
        if self.transport.is_closing():
            return
        client = "{}:{}".format(*self.client) if self.client else "a client"
        if reading == "head":
            log.info(
                "%s sent no complete request head in %g s: closed", client, self.header_timeout
            )
            detail = f"the request line and headers did not come within {self.header_timeout:g} s"
            self._answer_and_close(408, "Request timeout", detail)
        elif self.flow.read_paused:
            # The gateway stopped reading this body (its buffer is full): not the client.
            self._arm("body", self.body_timeout)
        else:
            log.info("%s paused its request body over %g s: closed", client, self.body_timeout)
            self.transport.close()

    def _answer_and_close(self, status: int, title: str, detail: str) -> None:
        """An RFC 9457 problem, then close: nothing more is read on this connection."""
        self._unwatch()
        body = json.dumps(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        ).encode()
        head = (
            f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
