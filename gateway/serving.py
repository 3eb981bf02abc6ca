"""How uvicorn serves the gateway: its options, taken from the settings, and the HTTP/1.1
protocol with the limits a server facing untrusted clients needs.

- The request head (request line and headers) is bounded by h11's
  ``max_incomplete_event_size`` (`Settings.max_header_size`, 16 KiB by default, as
  Node.js and h11 itself; nginx allows 4 x 8 KiB, Apache 8 KiB a field and 100 fields):
  a longer head is answered 431 and the connection closed, having cost at most that
  much memory plus one read. uvicorn's default parser, httptools, has no such bound, so
  the gateway uses h11. The count of header fields is bounded by that size too; the
  app refuses more than `Settings.max_headers` (see `gateway.app.RequestLimits`).
- uvicorn has no read timeouts: its keep-alive timer is disarmed by the first byte of
  the next request, so a client sending one byte now and then holds a connection
  forever (slowloris). `GuardedH11Protocol` adds them: the head must be complete within
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

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.app import SHUTDOWN_GRACE
from gateway.settings import Settings

log = logging.getLogger(__name__)


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app` under `settings` (`options` add to it)."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(settings.header_timeout, settings.body_timeout),
        h11_max_incomplete_event_size=settings.max_header_size,
        timeout_keep_alive=settings.keep_alive_timeout,
        ws_max_size=settings.max_ws_message,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        **options,
    )


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[GuardedH11Protocol]:
    """`GuardedH11Protocol` with these timeouts (uvicorn takes a protocol class)."""
    timeouts = {"header_timeout": header_timeout, "body_timeout": body_timeout}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), timeouts)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head, a timeout for
    pauses in a request body, and 431 (not 400) for a head over the size limit."""

    header_timeout = 20.0
    body_timeout = 20.0

    _reading: str | None = None  # "head" or "body" while a timer watches the client
    _timer: asyncio.TimerHandle | None = None
    _upgraded = False  # to a WebSocket, whose protocol owns the connection from then on

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(progress=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._upgraded = True
        self._unwatch()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._unwatch()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size
        if limit is not None and len(self.conn.trailing_data[0]) > limit:
            detail = f"the request line and headers are over the limit of {limit} bytes"
            self._answer_and_close(431, "Request header fields too large", detail)
        else:
            super().send_400_response(msg)

    def _watch(self, progress: bool = False) -> None:
        """Time what the client is sending now: a head (one deadline for all of it) or a
        body (the pause since its last bytes); nothing while the app answers."""
        state = self.conn.their_state
        if self._upgraded or self.transport.is_closing():
            self._unwatch()
        elif state is h11.IDLE:
            if self._reading != "head":
                self._arm("head", self.header_timeout)
        elif state is h11.SEND_BODY:
            if self._reading != "body" or progress:
                self._arm("body", self.body_timeout)
        else:
            self._unwatch()

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
        body = json.dumps(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        )
        headers = [
            ("content-type", "application/problem+json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        try:
            output = self.conn.send(h11.Response(status_code=status, headers=headers))
            output += self.conn.send(h11.Data(data=body.encode())) or b""
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # an answer was started already: just close
            output = b""
        if output:
            self.transport.write(output)
        self.transport.close()
