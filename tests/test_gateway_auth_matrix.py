"""Every endpoint against every kind of caller, on a live gateway (a subprocess, with
--api-keys and --protect-metrics): no credentials, a wrong (unknown) key, a valid key not
granted the address, and a granted key. Each cell is the status observed (a WebSocket's
close code, or "open" when it streams), asserted against the table below, and the
matrix is printed (``pytest -s`` shows it).

"Not granted" for POST /auth/tickets and GET /metrics is a valid key: neither names an
address, so any valid credential may have a ticket (which carries only its grants) or
read the metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from auth_fixtures import (
    closed_with,
    new_key,
    next_frame,
    sse,
    sse_status,
    ticket,
    websocket,
    write_keys,
)
from gateway_fixtures import GatewayServer, Program, example, unique
from websockets.sync.client import ClientConnection

GRANTED = new_key()
NOT_GRANTED = new_key()
WRONG = new_key()  # in no file
COLUMNS = ("no credentials", "wrong key", "not granted", "granted")
ENVELOPE = "application/vnd.amqp.message+json"

#: The statuses each endpoint must answer, column by column.
EXPECTED: dict[str, tuple[str, str, str, str]] = {
    "POST /messages/{a}": ("401", "401", "403", "201"),
    "POST /messages/{a} (batch)": ("401", "401", "403", "207"),
    "GET /messages/{a} (long-poll)": ("401", "401", "403", "200"),
    "POST /requests/{a}": ("401", "401", "403", "200"),
    "GET /streams/{a} WebSocket, X-API-Key": ("4401", "4401", "4403", "open"),
    "GET /streams/{a} WebSocket, ?ticket=": ("4401", "4401", "4403", "open"),
    "GET /streams/{a} SSE, X-API-Key": ("401", "401", "403", "200"),
    "GET /streams/{a} SSE, ?ticket=": ("401", "401", "403", "200"),
    "POST /auth/tickets": ("401", "401", "201", "201"),
    "GET /metrics (--protect-metrics)": ("401", "401", "200", "200"),
    "GET /healthz": ("200", "200", "200", "200"),
    "GET /readyz": ("200", "200", "200", "200"),
    "GET / (console)": ("200", "200", "200", "200"),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("matrix")
    keys = write_keys(
        folder / "keys.json",
        {
            GRANTED: {"name": "granted", "send": ["m/*"], "receive": ["m/*"], "request": ["m/*"]},
            NOT_GRANTED: {"name": "elsewhere", "send": ["x"], "receive": ["x"], "request": ["x"]},
        },
    )
    with GatewayServer(folder, "--api-keys", str(keys), "--protect-metrics") as server:
        yield server


def _headers(column: str) -> dict[str, str]:
    key = {"wrong key": WRONG, "not granted": NOT_GRANTED, "granted": GRANTED}.get(column)
    return {"X-API-Key": key} if key else {}


def _ticket_query(gateway: GatewayServer, column: str) -> dict[str, str]:
    if column == "no credentials":
        return {}
    if column == "wrong key":
        return {"ticket": new_key()}  # made up, as a wrong key
    return {"ticket": ticket(gateway, _headers(column))}


def _websocket(gateway: GatewayServer, address: str, column: str, by_ticket: bool) -> str:
    assert gateway.post(address, {"n": 1}, headers=_headers("granted")).status_code == 201
    headers, query = (None, _ticket_query(gateway, column)) if by_ticket else (_headers(column), {})
    client: ClientConnection
    with websocket(gateway, address, headers, **query) as client:
        first = next_frame(client)
        if "error" not in first:
            assert first["body"] == {"n": 1}
            return "open"
        code, _, _ = closed_with(client)
        return str(code)


def _sse(gateway: GatewayServer, address: str, column: str, by_ticket: bool) -> str:
    """The status; a granted stream must also bring the message waiting there."""
    headers, query = ({}, _ticket_query(gateway, column)) if by_ticket else (_headers(column), {})
    if column != "granted":
        return str(sse_status(gateway, address, headers, **query))
    assert gateway.post(address, {"n": 1}, headers=headers or _headers(column)).status_code == 201
    with sse(gateway, address, headers, **query) as events:
        assert json.loads(events.next_event()["data"])["body"] == {"n": 1}
    return "200"


def _poll(gateway: GatewayServer, address: str, column: str) -> str:
    """The status; a granted long-poll must also take the message waiting there."""
    headers = _headers(column)
    if column == "granted":
        assert gateway.post(address, {"n": 1}, headers=headers).status_code == 201
    answer = gateway.http.get(f"/messages/{address}", params={"timeout": 5}, headers=headers)
    if answer.status_code == 200:
        assert answer.json()["messages"][0]["body"] == {"n": 1}
    return str(answer.status_code)


def _cell(gateway: GatewayServer, endpoint: str, column: str) -> str:
    http, headers, address = gateway.http, _headers(column), unique("m/matrix")
    calls: dict[str, Callable[[], str]] = {
        "POST /messages/{a}": lambda: str(
            http.post(f"/messages/{address}", json={"n": 1}, headers=headers).status_code
        ),
        "POST /messages/{a} (batch)": lambda: str(
            http.post(
                f"/messages/{address}",
                content=json.dumps([{"body": 1}, {"body": 2}]),
                headers={"Content-Type": ENVELOPE, **headers},
            ).status_code
        ),
        "GET /messages/{a} (long-poll)": lambda: _poll(gateway, address, column),
        "POST /requests/{a}": lambda: str(
            http.post(
                "/requests/m/service",
                content="hello",
                headers={"Content-Type": "text/plain", "Request-Timeout": "10", **headers},
            ).status_code
        ),
        "GET /streams/{a} WebSocket, X-API-Key": lambda: _websocket(
            gateway, address, column, by_ticket=False
        ),
        "GET /streams/{a} WebSocket, ?ticket=": lambda: _websocket(
            gateway, address, column, by_ticket=True
        ),
        "GET /streams/{a} SSE, X-API-Key": lambda: _sse(gateway, address, column, False),
        "GET /streams/{a} SSE, ?ticket=": lambda: _sse(gateway, address, column, True),
        "POST /auth/tickets": lambda: str(http.post("/auth/tickets", headers=headers).status_code),
        "GET /metrics (--protect-metrics)": lambda: str(
            http.get("/metrics", headers=headers).status_code
        ),
        "GET /healthz": lambda: str(http.get("/healthz", headers=headers).status_code),
        "GET /readyz": lambda: str(http.get("/readyz", headers=headers).status_code),
        "GET / (console)": lambda: str(http.get("/", headers=headers).status_code),
    }
    return calls[endpoint]()


def test_every_endpoint_against_every_kind_of_caller(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    with Program(tmp_path, example("server", "-a", f"{gateway.amqp}/m/service")) as service:
        service.wait_for_line("Listening on")
        observed = {
            endpoint: tuple(_cell(gateway, endpoint, column) for column in COLUMNS)
            for endpoint in EXPECTED
        }
    width = max(map(len, EXPECTED))
    lines = [" | ".join([f"{'endpoint':<{width}}", *COLUMNS])]
    for endpoint, cells in observed.items():
        padded = (f"{cell:<{len(column)}}" for cell, column in zip(cells, COLUMNS, strict=True))
        lines.append(" | ".join([f"{endpoint:<{width}}", *padded]))
    print("\n" + "\n".join(lines))
    wrong = {
        endpoint: (cells, EXPECTED[endpoint])
        for endpoint, cells in observed.items()
        if cells != EXPECTED[endpoint]
    }
    assert not wrong, f"observed (expected): {wrong}"
