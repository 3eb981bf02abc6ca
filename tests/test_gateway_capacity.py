"""How many streams one gateway holds, and that streams which fail or are abandoned
cost nothing afterwards: the real gateway (a subprocess), thousands of WebSockets from
one test process (`websocket_swarm`, a bare asyncio client), long-polls on raw sockets.

A stream is a link on a session shared with others, not a session of its own: before,
the 256th stream waited for a free channel of the gateway's one AMQP connection and got
503 after 30 s, and every stream that gave up stayed queued for a channel, scanned by
every output pass. The capacity tests print what they measured (run with -s to see it).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import GatewayServer, amqp_broker, parse_metrics, silent_peer, unique
from websocket_swarm import StreamClient, close_all, open_streams

#: Seconds for a message posted to reach its stream.
FRAME_TIMEOUT = 10.0
#: Bound of the whole opening of thousands of streams, and of their messages.
SWARM_TIMEOUT = 240.0
#: WebSocket close code for "try again later" (RFC 6455 section 7.4.1).
TRY_AGAIN_LATER = 1013
#: More streams than the 255 channels of one AMQP connection to our broker.
OVER_CHANNEL_MAX = 300


@pytest.fixture(autouse=True)
def enough_open_files() -> Iterator[None]:
    """Thousands of sockets here and in the gateway (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 20_000) if hard != resource.RLIM_INFINITY else 20_000
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def stream_path(address: str, **query: str) -> str:
    path = f"/streams/{address}"
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def open_counted(
    gateway: GatewayServer, http: httpx.AsyncClient, addresses: list[str]
) -> list[StreamClient]:
    """Open a WebSocket stream on each address and wait until the gateway counts them
    all open (their receivers attached)."""
    clients = await open_streams("127.0.0.1", gateway.http_port, map(stream_path, addresses))
    await wait_for_streams(http, len(addresses))
    return clients


async def wait_for_streams(http: httpx.AsyncClient, count: int) -> None:
    key = 'gateway_open_streams{kind="websocket"}'
    deadline = time.monotonic() + SWARM_TIMEOUT
    while (open_now := (await metrics(http)).get(key, 0)) != count:
        assert time.monotonic() < deadline, f"{open_now} streams open, not {count}"
        await asyncio.sleep(0.2)


async def metrics(http: httpx.AsyncClient) -> dict[str, float]:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    return parse_metrics(answer.text)


async def post_each(http: httpx.AsyncClient, addresses: list[str]) -> None:
    """POST one message to each address, naming its address, a few at a time."""
    gate = asyncio.Semaphore(32)

    async def post(address: str) -> None:
        async with gate:
            answer = await http.post(f"/messages/{address}", json={"for": address})
            assert answer.status_code == 201, answer.text

    await asyncio.gather(*(post(address) for address in addresses))


async def each_gets_its_own(clients: list[StreamClient], addresses: list[str]) -> None:
    async def one(client: StreamClient, address: str) -> None:
        frame = json.loads(await client.next_text(timeout=SWARM_TIMEOUT))
        assert frame.get("body") == {"for": address}, frame

    await asyncio.gather(
        *(one(client, address) for client, address in zip(clients, addresses, strict=True))
    )


def hold_streams(gateway: GatewayServer, count: int) -> dict[str, float]:
    """Open `count` idle streams, each on its own address; post one message to each
    and check that each stream gets its own; close them. Returns what was measured."""

    async def run() -> dict[str, float]:
        addresses = [unique(f"capacity-{index}") for index in range(count)]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as http:
            rss_before = gateway.rss_kib()
            started = time.monotonic()
            clients = await open_counted(gateway, http, addresses)
            opened = time.monotonic() - started
            await asyncio.sleep(1)
            rss_held = gateway.rss_kib()
            try:
                started = time.monotonic()
                await post_each(http, addresses)
                await each_gets_its_own(clients, addresses)
                delivered = time.monotonic() - started
            finally:
                await close_all(clients)
            await wait_for_streams(http, 0)
            return {
                "streams": count,
                "seconds to open": round(opened, 1),
                "seconds to post and deliver": round(delivered, 1),
                "KiB of RSS per idle stream": round((rss_held - rss_before) / count, 1),
            }

    figures = asyncio.run(run())
    print(f"\n{figures}")
    return figures


@pytest.mark.slow
def test_ten_thousand_idle_streams_on_the_embedded_broker_each_get_their_own_message(
    tmp_path: Path,
) -> None:
    with GatewayServer(tmp_path, "--log-level", "warning") as gateway:
        hold_streams(gateway, 10_000)


@pytest.mark.slow
def test_five_thousand_idle_streams_through_an_external_broker(tmp_path: Path) -> None:
    """Through `python -m amqp_core.broker`: each address tried alone first (the
    gateway does not know this broker never ends a session over one)."""
    broker, broker_address = amqp_broker(tmp_path)
    with (
        broker,
        GatewayServer(
            tmp_path, "--amqp-url", f"amqp://{broker_address}", "--log-level", "warning"
        ) as gateway,
    ):
        hold_streams(gateway, 5_000)


# -- what gives up or goes away costs nothing --------------------------------------------


def abandon_long_polls(gateway: GatewayServer, count: int) -> None:
    """Start `count` long-polls (30 s each) and go away half a second later."""
    sockets = []
    try:
        for index in range(count):
            client = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10)
            request = f"GET /messages/{unique(f'gone-{index}')}?timeout=30 HTTP/1.1\r\n"
            client.sendall(f"{request}Host: localhost\r\n\r\n".encode())
            sockets.append(client)
        time.sleep(0.5)
    finally:
        for client in sockets:
            client.close()


def test_idle_streams_and_abandoned_long_polls_over_channel_max_block_nobody(
    tmp_path: Path,
) -> None:
    """300 idle WebSockets and 300 long-polls abandoned after half a second, more than
    one connection has channels: a new stream and a new long-poll still get their
    messages at once."""
    with GatewayServer(tmp_path, "--log-level", "warning") as gateway:

        async def run() -> None:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as http:
                idle = await open_counted(
                    gateway, http, [unique("idle") for _ in range(OVER_CHANNEL_MAX)]
                )
                try:
                    await asyncio.to_thread(abandon_long_polls, gateway, OVER_CHANNEL_MAX)
                    address = unique("after")
                    (late,) = await open_streams(
                        "127.0.0.1", gateway.http_port, [stream_path(address)]
                    )
                    await post_each(http, [address])
                    frame = json.loads(await late.next_text(timeout=FRAME_TIMEOUT))
                    assert frame["body"] == {"for": address}
                    polled = unique("polled")
                    await post_each(http, [polled])
                    answer = await http.get(f"/messages/{polled}", params={"timeout": 5})
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["messages"][0]["body"] == {"for": polled}
                    await close_all([late])
                finally:
                    await close_all(idle)

        asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idle(gateway: GatewayServer) -> None:
    """The gateway uses (almost) no CPU while nothing happens, and answers /metrics."""
    time.sleep(1)
    before = cpu_seconds(gateway.pid)
    time.sleep(3)
    busy = cpu_seconds(gateway.pid) - before
    assert busy < 0.5, f"the gateway used {busy:.2f} s of CPU in 3 s while idle"
    started = time.monotonic()
    samples = gateway.metrics()
    assert time.monotonic() - started < 2.0, "/metrics took over 2 s"
    assert samples.get('gateway_open_streams{kind="websocket"}', 0) == 0


def test_a_thousand_streams_at_once_open_and_leave_the_gateway_idle(tmp_path: Path) -> None:
    """1000 streams opened at once all attach (before, 255 did and 745 failed after
    --attach-timeout, their sessions left queued for a channel, scanned by every output
    pass); once all are closed, the gateway is idle and /metrics answers at once."""
    with GatewayServer(tmp_path, "--attach-timeout", "5", "--log-level", "warning") as gateway:

        async def run() -> None:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as http:
                clients = await open_counted(gateway, http, [unique("burst") for _ in range(1000)])
                await close_all(clients)
                await wait_for_streams(http, 0)

        asyncio.run(run())
        assert_idle(gateway)


def test_a_thousand_streams_whose_attach_never_completes_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    """A broker that never answers an attach: every one of 1000 streams opened at once is
    told to try again later (close code 1013, a problem frame) once --attach-timeout
    passed, and afterwards the gateway is idle: nothing queued, nothing retried, nothing
    scanned (before, 745 such streams left the gateway at 100% CPU and /metrics took
    minutes)."""
    peer, peer_address = silent_peer(tmp_path)
    with (
        peer,
        GatewayServer(
            tmp_path,
            "--amqp-url",
            f"amqp://{peer_address}",
            "--attach-timeout",
            "1",
            "--log-level",
            "warning",
        ) as gateway,
    ):

        async def run() -> None:
            addresses = [unique("never") for _ in range(1000)]
            clients = await open_streams(
                "127.0.0.1", gateway.http_port, map(stream_path, addresses)
            )
            async with asyncio.timeout(60):
                closes = await asyncio.gather(*(client.closed for client in clients))
            assert {code for code, _ in closes} == {TRY_AGAIN_LATER}, set(closes)
            problems = [json.loads(client.texts[0])["error"] for client in clients]
            assert {problem["status"] for problem in problems} == {503}
            assert "did not answer the attach" in problems[0]["detail"]

        asyncio.run(run())
        assert_idle(gateway)


def test_a_client_that_stops_answering_pings_loses_its_stream(tmp_path: Path) -> None:
    """Keepalive still finds dead clients: a socket that completed the upgrade and then
    went silent (no pong, no close) is dropped after --ws-ping-interval and as long
    again, and its stream closed; a client that answers pings keeps its stream."""
    with GatewayServer(tmp_path, "--ws-ping-interval", "0.5", "--log-level", "warning") as gateway:
        silent = socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10)
        upgrade = (
            f"GET /streams/{unique('silent')} HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        silent.sendall(upgrade.encode())
        assert b" 101 " in silent.recv(4096)

        async def run() -> None:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as http:
                (alive,) = await open_streams(
                    "127.0.0.1", gateway.http_port, [stream_path(unique("alive"))]
                )
                await wait_for_streams(http, 2)
                await asyncio.sleep(3)  # several ping intervals
                await wait_for_streams(http, 1)
                assert not alive.closed.done(), alive.closed.result()
                await close_all([alive])

        try:
            asyncio.run(run())
        finally:
            silent.close()
