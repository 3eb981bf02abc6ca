"""Helpers for the tests of the gateway's authentication (tests/test_gateway_auth*.py,
tests/test_gateway_jwt.py): key files written as the README says (each key's SHA-256,
computed here, not by the gateway's code), WebSocket and SSE clients that present
credentials, and a Proton peer that records every link the gateway attaches."""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from gateway_fixtures import HOST, GatewayServer, Program, script
from processes import free_port, wait_for_port
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

#: Seconds to wait for one frame, event or close.
FRAME_TIMEOUT = 10.0


def new_key() -> str:
    return secrets.token_urlsafe(32)


def write_keys(path: Path, keys: dict[str, dict[str, Any]]) -> Path:
    """Write the API key file: each key stored as "sha256:<hex>" with its entry."""
    entries = {
        "sha256:" + hashlib.sha256(key.encode()).hexdigest(): entry for key, entry in keys.items()
    }
    path.write_text(json.dumps(entries, indent=2))
    return path


def stream_url(gateway: GatewayServer, address: str, **query: Any) -> str:
    url = f"{gateway.ws_url}/streams/{quote(address, safe='')}"
    return url + ("?" + urlencode(query) if query else "")


@contextmanager
def websocket(
    gateway: GatewayServer, address: str, headers: dict[str, str] | None = None, **query: Any
) -> Iterator[ClientConnection]:
    with connect(
        stream_url(gateway, address, **query),
        proxy=None,
        additional_headers=headers,
        open_timeout=FRAME_TIMEOUT,
        close_timeout=5,
    ) as client:
        yield client


def next_frame(client: ClientConnection) -> dict[str, Any]:
    try:
        frame: dict[str, Any] = json.loads(client.recv(timeout=FRAME_TIMEOUT))
    except TimeoutError:
        raise AssertionError(f"no frame in {FRAME_TIMEOUT} s") from None
    return frame


def closed_with(client: ClientConnection) -> tuple[int, str, list[dict[str, Any]]]:
    """Read until the gateway closes: (close code, reason, the frames before it)."""
    seen = []
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline:
        try:
            seen.append(json.loads(client.recv(timeout=max(0.01, deadline - time.monotonic()))))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason, seen
        except TimeoutError:
            break
    raise AssertionError(f"the gateway did not close the WebSocket; frames: {seen}")


def refused_websocket(
    gateway: GatewayServer, address: str, headers: dict[str, str] | None = None, **query: Any
) -> tuple[int, str, dict[str, Any]]:
    """Open a stream that must be refused: (close code, reason, its error problem)."""
    with websocket(gateway, address, headers, **query) as client:
        code, reason, frames = closed_with(client)
    assert len(frames) == 1 and "error" in frames[0], frames
    return code, reason, frames[0]["error"]


class EventReader:
    """Reads an SSE response's events (id, event, data); comments are skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next_event(self) -> dict[str, str]:
        """The next event; fail after FRAME_TIMEOUT (the gateway's keep-alive comments
        come often enough to look at the clock)."""
        event: dict[str, str] = {}
        deadline = time.monotonic() + FRAME_TIMEOUT
        for line in self.lines:
            assert time.monotonic() < deadline, f"no event in {FRAME_TIMEOUT} s"
            if line.startswith(":"):
                continue
            if not line:
                if event:
                    return event
                continue
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")
        raise AssertionError(f"the SSE stream ended; last event {event}")


@contextmanager
def sse(
    gateway: GatewayServer, address: str, headers: dict[str, str] | None = None, **query: Any
) -> Iterator[EventReader]:
    with gateway.http.stream(
        "GET",
        f"/streams/{quote(address, safe='')}",
        params=query,
        headers={"Accept": "text/event-stream", **(headers or {})},
        timeout=httpx.Timeout(FRAME_TIMEOUT),
    ) as response:
        assert response.status_code == 200, response.read()
        yield EventReader(response)


def sse_status(
    gateway: GatewayServer, address: str, headers: dict[str, str] | None = None, **query: Any
) -> int:
    """The status of a GET /streams as SSE, without reading a stream that would not end."""
    with gateway.http.stream(
        "GET",
        f"/streams/{quote(address, safe='')}",
        params=query,
        headers={"Accept": "text/event-stream", **(headers or {})},
    ) as response:
        return response.status_code


def ticket(gateway: GatewayServer, headers: dict[str, str]) -> str:
    answer = gateway.http.post("/auth/tickets", headers=headers)
    assert answer.status_code == 201, answer.text
    value: str = answer.json()["ticket"]
    return value


def refusals(gateway: GatewayServer) -> dict[str, float]:
    """gateway_auth_refusals_total by reason."""
    prefix = 'gateway_auth_refusals_total{reason="'
    return {
        name[len(prefix) : -2]: value
        for name, value in gateway.metrics().items()
        if name.startswith(prefix)
    }


#: A Proton broker stand-in that prints each link attached to it ("attach sender ADDR"
#: for a link on which the gateway sends, "attach receiver ADDR" for one it receives
#: on), accepts what it is sent, and sends nothing: what the gateway attaches, seen
#: from the AMQP side.
RECORDING_PEER = """
import sys
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Recorder(MessagingHandler):
    def __init__(self, url):
        super().__init__()
        self.url = url

    def on_start(self, event):
        event.container.listen(self.url)
        print("listening", flush=True)

    def on_link_opening(self, event):
        link = event.link
        if link.is_receiver:
            address = link.remote_target.address
            link.target.address = address
            print("attach sender", address, flush=True)
        else:
            address = link.remote_source.address or "dynamic-replies"
            link.source.address = address
            print("attach receiver", address, flush=True)


Container(Recorder(sys.argv[1])).run()
"""


def recording_peer(folder: Path) -> tuple[Program, str]:
    """`RECORDING_PEER` on a free port: (program, host:port)."""
    port = free_port()
    path = script(folder, "recording_peer", RECORDING_PEER)
    program = Program(folder, [sys.executable, str(path), f"{HOST}:{port}"])
    try:
        wait_for_port(port, timeout=20)
    except BaseException:
        program.stop()
        raise
    return program, f"{HOST}:{port}"
