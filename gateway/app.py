"""`create_app(settings)`: the gateway's FastAPI app, wired together. Nothing happens at
import time; the AMQP side starts with the app's lifespan and stops with it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import SECURITY_SCHEMES
from gateway.origins import LOOPBACK_HOSTS, HostAndOriginGuard
from gateway.problems import PROBLEM_JSON, declare_problems, install_problem_handlers
from gateway.routes import messages, ops, requests, streams, tickets
from gateway.settings import Settings
from gateway.state import Gateway

VERSION = "0.1.0"

DESCRIPTION = """\
HTTP, WebSocket and Server-Sent Events in front of an AMQP 1.0 broker.

- `POST /messages/{address}` sends a message and answers with the broker's outcome.
- `GET /streams/{address}` streams messages over a WebSocket or as Server-Sent Events
  (protocols in the README: OpenAPI cannot describe them).
- `GET /messages/{address}?count=N&timeout=S` takes messages by long-poll.
- `POST /requests/{address}` calls a request/response service and answers its reply.
- `POST /auth/tickets` gives a browser a single-use ticket to open a stream with.

With authentication on, clients send an API key in `X-API-Key` or a bearer token in
`Authorization` (a stream may use `?ticket=` instead); 401 without a valid one, 403 for
an address outside its grants.

Errors are RFC 9457 problem details (`application/problem+json`).
"""

#: How long shutdown waits for requests in flight before closing the AMQP connection.
SHUTDOWN_GRACE = 10.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not state.started:  # `python -m gateway` starts it first, to report failures
            await state.start()
        try:
            yield
        finally:
            await state.stop(grace=SHUTDOWN_GRACE)

    app = FastAPI(
        title="AMQP gateway",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.gateway = state
    install_problem_handlers(app)
    describe = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = declare_problems(describe())
            document["components"]["securitySchemes"] = SECURITY_SCHEMES
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.router.routes.extend([*messages.served_routes, *streams.served_routes])
    for module in (messages, streams, requests, tickets, ops):
        app.include_router(module.router)

    console = files("gateway").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_console() -> str:
        return console

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["*"],
        )
    allowed_hosts = settings.allowed_hosts or (list(LOOPBACK_HOSTS) if settings.loopback else [])
    app.add_middleware(
        HostAndOriginGuard,
        allowed_hosts=allowed_hosts,
        allowed_origins=settings.cors_origins,
        count_refusal=state.auth.count_refusal,
    )
    app.add_middleware(
        RequestLimits,
        max_body=settings.max_body,
        max_headers=settings.max_headers,
    )
    app.add_middleware(state.metrics.middleware)
    return app


class RequestLimits:
    """Answer 431 to a request (or a WebSocket handshake) with more than `max_headers`
    header fields (the server bounds the head's size: `gateway.serving`), and 413 to a request whose
    body is over `max_body` bytes, as announced by its Content-Length or as it streams
    in, before a route reads any of it into memory."""

    def __init__(self, app: ASGIApp, max_body: int, max_headers: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_headers = max_headers

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Coroutines handed on, not awaited here: an open WebSocket would hold this frame.
        if scope["type"] not in ("http", "websocket"):
            return self.app(scope, receive, send)
        problem = self._header_problem(scope)
        if problem is not None:
            return self._refuse_headers(scope, send, *problem)
        if scope["type"] == "websocket":
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                # Its length first: int() refuses more than 4,300 digits.
                too_long = len(value) > len(str(self.max_body))
                if not value.isdigit() or too_long or int(value) > self.max_body:
                    await self._refuse(send, 413, "Body too large", self._body_detail())
                    return
                await self.app(scope, receive, send)
                return
        # No length announced (chunked): read it here, bounded, and hand it on as it came,
        # chunk by chunk (joined, a large body would be copied whole in one step).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(send, 413, "Body too large", self._body_detail())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        chunks.reverse()

        async def replay() -> Message:
            if chunks:
                body = chunks.pop()
                return {"type": "http.request", "body": body, "more_body": bool(chunks)}
            return await receive()

        await self.app(scope, replay, send)

    def _body_detail(self) -> str:
        return f"the body is over the limit of {self.max_body} bytes"

    def _header_problem(self, scope: Scope) -> tuple[str, str] | None:
        """(title, detail) if the request has more header fields than allowed."""
        count = len(scope["headers"])
        if count > self.max_headers:
            detail = f"{count} header fields: at most {self.max_headers} are read"
            return "Too many header fields", detail
        return None

    async def _refuse_headers(self, scope: Scope, send: Send, title: str, detail: str) -> None:
        if scope["type"] == "http":
            await self._refuse(send, 431, title, detail)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await self._refuse(send, 431, title, detail, "websocket.")
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def _refuse(
        self, send: Send, status: int, title: str, detail: str, prefix: str = ""
    ) -> None:
        """An RFC 9457 problem as the answer (`prefix` "websocket." refuses a WebSocket
        handshake with it)."""
        problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        body = json.dumps(problem).encode()
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": f"{prefix}http.response.start", "status": status, "headers": headers})
        await send({"type": f"{prefix}http.response.body", "body": body})
