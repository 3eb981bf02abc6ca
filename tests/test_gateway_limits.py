"""The HTTP server's limits against hostile clients, through the real gateway (a
subprocess): the size of a request head (431), the number of header fields (431), the
time to send a head (408 and closed) and the pauses in a body (closed), idle keep-alive
connections, and the memory that unfinished heads can take.

Raw sockets play the hostile clients, since well-behaved client libraries cannot send
what these tests need."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_fixtures import HOST, GatewayServer, assert_problem, unique
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

#: The module gateway's timeouts (seconds), short so that the tests are quick.
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEP_ALIVE_TIMEOUT = 1
#: The defaults of --max-header-size and --max-headers.
MAX_HEADER_SIZE = 16 * 1024
MAX_HEADERS = 100
#: Longest wait for the gateway to act on a timeout (the machine is shared).
SLACK = 3.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("limits")
    flags = ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)]
    flags += ["--keep-alive-timeout", str(KEEP_ALIVE_TIMEOUT)]
    with GatewayServer(folder, *flags) as server:
        yield server


def raw_connection(gateway: GatewayServer) -> socket.socket:
    connection = socket.create_connection((HOST, gateway.http_port), timeout=10)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def read_until_closed(connection: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (a reset counts as a
    close), and how long that took; fail if it is still open after `timeout`."""
    started = time.monotonic()
    connection.settimeout(timeout)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        message = f"still open after {timeout} s; received {received[:200]!r}"
        raise AssertionError(message) from None
    return received, time.monotonic() - started


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


# -- the size and count of headers --------------------------------------------------------


def test_a_head_over_the_size_limit_is_431_and_closed(gateway: GatewayServer) -> None:
    address = unique("bighead")
    padding = "x" * (MAX_HEADER_SIZE + 4096)
    with raw_connection(gateway) as connection:
        connection.sendall(
            f"POST /messages/{address} HTTP/1.1\r\nHost: localhost\r\nX-Padding: {padding}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi".encode()
        )
        answer, _ = read_until_closed(connection, SLACK)
    status, problem = status_and_body(answer)
    assert status == 431, answer[:300]
    assert problem["status"] == 431 and str(MAX_HEADER_SIZE) in str(problem["detail"])
    assert gateway.http.get(f"/messages/{address}", params={"timeout": 0.5}).status_code == 204


def test_a_10_mb_header_is_never_taken(gateway: GatewayServer) -> None:
    """The gateway stops reading once the head is over the limit: the client gets 431
    or, still sending, finds the connection reset; never 201."""
    address = unique("hugehead")
    chunk = b"x" * 65536
    with raw_connection(gateway) as connection:
        try:
            connection.sendall(f"POST /messages/{address} HTTP/1.1\r\nX-Huge: ".encode())
            for _ in range(10 * 1024 * 1024 // len(chunk)):
                connection.sendall(chunk)
            connection.sendall(b"\r\nContent-Length: 2\r\n\r\nhi")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer, _ = read_until_closed(connection, SLACK)
        except ConnectionResetError:
            answer = b""
    if answer:
        assert status_and_body(answer)[0] == 431, answer[:300]
    assert gateway.http.get(f"/messages/{address}", params={"timeout": 0.5}).status_code == 204


def test_more_header_fields_than_allowed_is_431(gateway: GatewayServer) -> None:
    address = unique("manyheaders")
    many = {f"x-field-{n}": "1" for n in range(MAX_HEADERS + 1)}
    assert_problem(gateway.post(address, content="no", headers=many), 431)
    # A client's usual few headers and then some are fine.
    some = {f"x-field-{n}": "1" for n in range(MAX_HEADERS // 2)}
    answer = gateway.post(address, content="yes", headers=some)
    assert answer.status_code == 201, answer.text


def test_a_websocket_handshake_with_too_many_header_fields_is_431(gateway: GatewayServer) -> None:
    many = {f"x-field-{n}": "1" for n in range(MAX_HEADERS + 1)}
    url = f"{gateway.ws_url}/streams/{unique('manyheaders')}"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, proxy=None, additional_headers=many, open_timeout=10)
    assert refused.value.response.status_code == 431


def test_four_unfinished_50_mb_heads_leave_the_memory_flat(gateway: GatewayServer) -> None:
    before = gateway.rss_kib()
    peak = before
    chunk = b"x" * 65536
    refused = []

    def send_head() -> None:
        with raw_connection(gateway) as connection:
            try:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
                for _ in range(50 * 1024 * 1024 // len(chunk)):
                    connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                refused.append(True)

    senders = [threading.Thread(target=send_head) for _ in range(4)]
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        peak = max(peak, gateway.rss_kib())
        time.sleep(0.02)
    for sender in senders:
        sender.join()
    growth_mib = (peak - before) / 1024
    assert len(refused) == 4, "a 50 MB head was read to its end"
    assert growth_mib < 16, f"the gateway grew by {growth_mib:.1f} MiB"
    assert gateway.http.get("/healthz").status_code == 200


# -- read timeouts ------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_answered_408_and_closed(
    gateway: GatewayServer,
) -> None:
    with raw_connection(gateway) as connection:
        answer, waited = read_until_closed(connection, HEADER_TIMEOUT + SLACK)
    assert status_and_body(answer)[0] == 408, answer[:300]
    assert waited >= HEADER_TIMEOUT * 0.9


def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout(
    gateway: GatewayServer,
) -> None:
    """Slowloris: each byte comes well within the timeout, but the head as a whole does
    not; the deadline is not pushed back by each byte."""
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 100
    with raw_connection(gateway) as connection:
        started = time.monotonic()
        try:
            for byte in head:
                connection.send(bytes([byte]))
                time.sleep(HEADER_TIMEOUT / 10)
                if time.monotonic() - started > HEADER_TIMEOUT + SLACK:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer, _ = read_until_closed(connection, SLACK)
        closed_after = time.monotonic() - started
    assert closed_after < HEADER_TIMEOUT + SLACK, f"open for {closed_after:.1f} s"
    if answer:
        assert status_and_body(answer)[0] == 408, answer[:300]


def test_an_unfinished_body_is_dropped_after_the_body_timeout(gateway: GatewayServer) -> None:
    address = unique("halfbody")
    with raw_connection(gateway) as connection:
        connection.sendall(
            f"POST /messages/{address} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
            "Content-Length: 100\r\n\r\nonly ten b".encode()
        )
        answer, waited = read_until_closed(connection, BODY_TIMEOUT + SLACK)
    assert b" 201 " not in answer, answer[:300]
    assert waited >= BODY_TIMEOUT * 0.9
    assert gateway.http.get(f"/messages/{address}", params={"timeout": 0.5}).status_code == 204


def test_a_slow_body_that_never_pauses_long_is_taken(gateway: GatewayServer) -> None:
    """The body timeout bounds each pause, not the whole body."""
    address = unique("slowbody")
    body = b"steady"
    with raw_connection(gateway) as connection:
        connection.sendall(
            f"POST /messages/{address} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        started = time.monotonic()
        for byte in body:
            time.sleep(BODY_TIMEOUT / 3)
            connection.send(bytes([byte]))
        answer, _ = read_until_closed(connection, SLACK)
    assert time.monotonic() - started > BODY_TIMEOUT
    assert status_and_body(answer)[0] == 201, answer[:300]


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    gateway: GatewayServer,
) -> None:
    with raw_connection(gateway) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        connection.settimeout(SLACK)
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        rest, waited = read_until_closed(connection, KEEP_ALIVE_TIMEOUT + SLACK)
    assert rest == b""  # closed quietly: no 408 for a connection between requests
    assert KEEP_ALIVE_TIMEOUT * 0.9 <= waited < KEEP_ALIVE_TIMEOUT + SLACK


def test_a_websocket_stream_outlives_the_read_timeouts(gateway: GatewayServer) -> None:
    address = unique("longstream")
    with connect(f"{gateway.ws_url}/streams/{address}", proxy=None, open_timeout=10) as client:
        time.sleep(max(HEADER_TIMEOUT, BODY_TIMEOUT, KEEP_ALIVE_TIMEOUT) + 1)
        assert gateway.post(address, "still open").status_code == 201
        assert json.loads(client.recv(timeout=10))["body"] == "still open"


def test_limits_are_flags(tmp_path: Path) -> None:
    with GatewayServer(tmp_path, "--max-header-size", "2048", "--max-headers", "8") as small:
        assert_problem(small.http.get("/healthz", headers={"x-pad": "p" * 3000}), 431)
        headers = {f"x-{n}": "1" for n in range(6)}
        assert_problem(small.http.get("/healthz", headers=headers), 431)
        assert small.http.get("/healthz").status_code == 200
