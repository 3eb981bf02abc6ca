"""What keeps web pages of other sites away from a gateway a browser can reach: the
``Host`` and ``Origin`` checks.

- ``Host`` must be one of the allowed names (--allowed-hosts; on a loopback --http, by
  default, the loopback names). A page on evil.example that makes its own name resolve
  to 127.0.0.1 (DNS rebinding) sends ``Host: evil.example``, and is refused (400).
- ``Origin``, when a browser sends it, must be the gateway's own (its scheme-less
  host:port is the request's ``Host``) or one of --cors-origins, on a WebSocket upgrade
  and on every request that reaches AMQP or gives out a ticket: POST, and GET of
  /messages and /streams, which take messages. Otherwise a page on any site could
  POST text/plain to ``localhost`` (a "simple" request, sent without a preflight), open
  a WebSocket and read it, or take a queue's messages with ``EventSource`` (403).
- A browser sends no ``Origin`` with a GET it makes in "no-cors" mode (``<img src>``,
  ``fetch(url, {mode: "no-cors"})``), which would still take messages by long-poll; it
  does send ``Sec-Fetch-Site`` (Fetch Metadata, in every current browser), so a request
  to those paths without ``Origin`` whose ``Sec-Fetch-Site`` says another site (or
  another port of this one: "same-site") is refused too (403).

Starlette's TrustedHostMiddleware checks ``Host`` alone, answers in plain text and
counts nothing; this middleware answers problem+json like every other error, counts
each refusal in ``gateway_auth_refusals_total`` (reasons "host", "origin"), and checks
``Origin`` against the same ``Host``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.problems import PROBLEM_JSON

#: The names of this machine that a rebinding page cannot take.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

#: Where a foreign Origin is refused: the paths that reach AMQP or give out tickets.
GUARDED_PREFIXES = ("/messages/", "/streams/", "/requests/", "/auth/")


class HostAndOriginGuard:
    """ASGI middleware: refuse a request whose Host is not allowed (400), and one from
    a foreign Origin that would change something (403)."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: list[str],
        allowed_origins: list[str],
        count_refusal: Callable[[str], None],
    ) -> None:
        self.app = app
        self.any_host = not allowed_hosts or "*" in allowed_hosts
        self.hosts = frozenset(host.lower().strip("[]") for host in allowed_hosts)
        self.any_origin = "*" in allowed_origins
        self.origins = frozenset(origin.lower().rstrip("/") for origin in allowed_origins)
        self.count_refusal = count_refusal

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Handed on, not awaited here: an open WebSocket would hold this frame.
        if scope["type"] not in ("http", "websocket"):
            return self.app(scope, receive, send)
        host = origin = fetch_site = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value
        if not self.any_host and _host_name(host) not in self.hosts:
            self.count_refusal("host")
            detail = f"the Host {(host or '')[:100]!r} is not served here (--allowed-hosts)"
            return _refuse(scope, send, 400, "Host not allowed", detail)
        if origin is not None:
            foreign = not self._allowed(origin, host)
        else:
            foreign = fetch_site in (b"cross-site", b"same-site")
            origin = "another site"
        if foreign and self._guarded(scope):
            self.count_refusal("origin")
            detail = (
                f"requests from {origin[:100]!r} are refused: only the gateway's own "
                "pages and --cors-origins may change anything"
            )
            return _refuse(scope, send, 403, "Origin not allowed", detail)
        return self.app(scope, receive, send)

    def _guarded(self, scope: Scope) -> bool:
        if scope["type"] == "websocket":
            return True
        method = scope["method"]
        if method == "OPTIONS":
            return False  # a CORS preflight: the CORS middleware answers it
        return method != "GET" or str(scope["path"]).startswith(GUARDED_PREFIXES)

    def _allowed(self, origin: str, host: str | None) -> bool:
        if self.any_origin or origin.lower().rstrip("/") in self.origins:
            return True
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:
            return False
        return host is not None and netloc.lower() == host.lower()


def _host_name(host: str | None) -> str | None:
    """The name in a Host header value, without its port or an IPv6 address's brackets."""
    if not host:
        return None
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return None
    return name


async def _refuse(scope: Scope, send: Send, status: int, title: str, detail: str) -> None:
    """A problem+json answer, to a request or instead of a WebSocket handshake."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": 1008})
        return
    prefix = "websocket." if scope["type"] == "websocket" else ""
    problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body = json.dumps(problem).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": f"{prefix}http.response.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}http.response.body", "body": body})
