"""Benchmark: the embedded broker under a crowd, as other clients see it.

Three scenarios, each printing latencies (p50, p99, max) that a bystander sees:

- ``selectors``: the gateway with its embedded broker, a queue 20,000 deep, and 20
  WebSocket streams on it whose selector matches none of its messages. POST /messages
  to that queue one at a time, and meanwhile GET /healthz one at a time, before the
  streams open and while they are open.
- ``queues``: the gateway with its embedded broker, 20,000 queues holding one message
  each, then 1,000 idle AMQP sender links (on one connection) to 1,000 of them. GET
  /healthz every 20 ms for a while, before and after the senders attach.
- ``idle-producers``: `amqp-broker` on its own, N idle connections (default 5,000), each
  with one sender link to an address of its own. The broker's CPU use over a while,
  then a probe's round trips (send, receive, accept through another queue).

Absolute figures on a shared 2-core machine are noise; compare before and after, and
with the bystander's figures when the crowd is absent.

Usage: python bench/crowd.py selectors [--depth N] [--streams N] [--calls N]
       python bench/crowd.py queues [--queues N] [--senders N] [--seconds S]
       python bench/crowd.py idle-producers [--connections N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # tests/processes.py

from broker import CROWD_CLIENT, Probe, read_line  # noqa: E402  (bench/broker.py)
from processes import free_port, stop, wait_for_port  # noqa: E402

#: Seconds the crowd may take to gather.
GATHER_TIMEOUT = 600


def summary(latencies: list[float]) -> str:
    """p50, p99 and max of `latencies` (seconds), in milliseconds, and the share of
    their total spent in those over 50 ms."""
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]
    held = sum(latency for latency in ordered if latency > 0.05) / sum(ordered)
    return (
        f"p50 {p50 * 1000:8.1f}  p99 {p99 * 1000:8.1f}  max {ordered[-1] * 1000:8.1f} ms, "
        f"{held:4.0%} of the time in those over 50 ms"
    )


@contextlib.contextmanager
def gateway() -> Iterator[tuple[str, int]]:
    """`python -m gateway` with its embedded broker: its HTTP URL and AMQP port."""
    http_port, amqp_port = free_port(), free_port()
    command = [sys.executable, "-m", "gateway", "--http", f"127.0.0.1:{http_port}"]
    command += ["--amqp-listen", f"127.0.0.1:{amqp_port}", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not become ready in 30 s")
            time.sleep(0.1)
        yield url, amqp_port
    finally:
        stop(process, 15)


def send_one_each(amqp_port: int, addresses: list[str]) -> None:
    """Send one message to each address (ANONYMOUS-RELAY), returning once all were
    accepted."""
    from amqp_core import Message
    from amqp_core.handlers import MessagingHandler
    from amqp_core.reactor import Container

    class Sender(MessagingHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.sent = self.accepted = 0

        def on_start(self, event: Any) -> None:
            connection = event.container.connect(f"127.0.0.1:{amqp_port}", reconnect=False)
            event.container.create_sender(connection, None)

        def on_sendable(self, event: Any) -> None:
            while event.sender.credit and self.sent < len(addresses):
                address = addresses[self.sent]
                event.sender.send(Message(address=address, body={"sequence": self.sent}))
                self.sent += 1

        def on_accepted(self, event: Any) -> None:
            self.accepted += 1
            if self.accepted == len(addresses):
                event.connection.close()

        def on_rejected(self, event: Any) -> None:
            raise SystemExit("a message was rejected")

    Container(Sender()).run()


#: Connections one crowd process holds: Proton's Python client select()s, which takes
#: file descriptors below 1024 only.
CONNECTIONS_PER_PROCESS = 900


@contextlib.contextmanager
def crowd(url: str, prefix: str, links: int, per_connection: int) -> Iterator[None]:
    """`links` idle sender links, `per_connection` to a connection, to addresses that
    start with `prefix` (tests/peers/crowd_client.py hold, in as many processes as they
    need), until the block ends."""
    per_process = CONNECTIONS_PER_PROCESS * per_connection
    processes = []
    try:
        started = time.monotonic()
        for number, first in enumerate(range(0, links, per_process)):
            count = min(per_process, links - first)
            name = prefix if links <= per_process else f"{prefix}-{number}"
            command = [sys.executable, str(CROWD_CLIENT), "hold", url, name, str(count)]
            command.append(str(per_connection))
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE))
        for process in processes:
            if read_line(process, GATHER_TIMEOUT, "the crowd") != "ready":
                raise SystemExit("the crowd did not gather")
        print(f"  {links} sender links attached in {time.monotonic() - started:.1f} s")
        yield
    finally:
        for process in processes:
            stop(process, 15)


# -- selectors --------------------------------------------------------------------------


async def post_and_health(url: str, address: str, calls: int) -> tuple[list[float], list[float]]:
    """`calls` POSTs to `address`, one at a time, and meanwhile GET /healthz one at a time
    on another connection: the latencies of both."""
    posts: list[float] = []
    healths: list[float] = []

    async def post() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for number in range(calls):
                started = time.perf_counter()
                answer = await client.post(f"/messages/{address}", json={"call": number})
                posts.append(time.perf_counter() - started)
                if answer.status_code != 201:
                    raise SystemExit(f"POST answered {answer.status_code}: {answer.text}")

    async def health() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while len(posts) < calls:
                started = time.perf_counter()
                if (await client.get("/healthz")).status_code != 200:
                    raise SystemExit("/healthz did not answer 200")
                healths.append(time.perf_counter() - started)

    await asyncio.gather(post(), health())
    return posts, healths


async def with_streams(url: str, address: str, streams: int, calls: int) -> tuple[Any, Any]:
    selector = urllib.parse.quote("colour = 'none'")
    ws_url = url.replace("http", "ws", 1) + f"/streams/{address}?selector={selector}"
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(streams):
            await stack.enter_async_context(websockets.connect(ws_url))
        await asyncio.sleep(2)  # the streams' links attach
        return await post_and_health(url, address, calls)


def selectors(options: argparse.Namespace) -> None:
    print(
        f"selectors: a queue {options.depth} deep, {options.streams} WebSocket streams whose "
        f"selector matches nothing; {options.calls} POSTs one at a time, /healthz meanwhile"
    )
    with gateway() as (url, amqp_port):
        address = "crowded"
        send_one_each(amqp_port, [address] * options.depth)
        posts, healths = asyncio.run(post_and_health(url, address, options.calls))
        print(f"  without streams: POST {summary(posts)}")
        print(f"                   /healthz {summary(healths)}")
        posts, healths = asyncio.run(with_streams(url, address, options.streams, options.calls))
        print(f"  with streams:    POST {summary(posts)}")
        print(f"                   /healthz {summary(healths)}")


# -- queues -----------------------------------------------------------------------------


def health_over(url: str, seconds: float) -> list[float]:
    """GET /healthz every 20 ms for `seconds`: the latencies."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if client.get("/healthz").status_code != 200:
                raise SystemExit("/healthz did not answer 200")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    return latencies


def queues(options: argparse.Namespace) -> None:
    print(
        f"queues: {options.queues} queues holding a message each, then {options.senders} "
        f"idle sender links; /healthz every 20 ms for {options.seconds:g} s"
    )
    with gateway() as (url, amqp_port):
        addresses = [f"queue-{number}" for number in range(options.queues)]
        send_one_each(amqp_port, addresses)
        latencies = health_over(url, options.seconds)
        print(f"  {options.queues} queues:          /healthz {summary(latencies)}")
        with crowd(f"127.0.0.1:{amqp_port}", "queue", options.senders, options.senders):
            latencies = health_over(url, options.seconds)
        print(f"  and {options.senders} senders:   /healthz {summary(latencies)}")


# -- idle producers ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU time process `pid` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks


def idle_producers(options: argparse.Namespace) -> None:
    count = options.connections
    print(
        f"idle producers: amqp-broker, {count} connections with one idle sender link each; "
        f"the broker's CPU over {options.seconds:g} s, then a probe's round trips over as long"
    )
    port = free_port()
    command = [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"]
    broker = subprocess.Popen(command, cwd=REPO)
    try:
        wait_for_port(port, timeout=30)
        url = f"127.0.0.1:{port}"
        with crowd(url, "idle", count, 1):
            used, started = cpu_seconds(broker.pid), time.monotonic()
            time.sleep(options.seconds)
            used, ended = cpu_seconds(broker.pid) - used, time.monotonic()
            print(f"  broker CPU {used / (ended - started) * 100:5.1f} %")
            probe = Probe(url, "probe")
            try:
                started = time.monotonic()
                time.sleep(options.seconds)
                # The round trip under way counts too: it may be the one held longest.
                ended = probe.finish_after(time.monotonic())
            finally:
                probe.stop()
        round_trips = [rtt / 1000 for rtt in probe.between(started, ended)]
        print(f"  probe: {len(round_trips)} round trips, {summary(round_trips)}")
    finally:
        stop(broker, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    selector_options = scenarios.add_parser("selectors")
    selector_options.add_argument("--depth", type=int, default=20_000)
    selector_options.add_argument("--streams", type=int, default=20)
    selector_options.add_argument("--calls", type=int, default=200)
    queue_options = scenarios.add_parser("queues")
    queue_options.add_argument("--queues", type=int, default=20_000)
    queue_options.add_argument("--senders", type=int, default=1_000)
    queue_options.add_argument("--seconds", type=float, default=10)
    idle_options = scenarios.add_parser("idle-producers")
    idle_options.add_argument("--connections", type=int, default=5_000)
    idle_options.add_argument("--seconds", type=float, default=10)
    options = parser.parse_args()
    if options.scenario == "selectors":
        selectors(options)
    elif options.scenario == "queues":
        queues(options)
    else:
        idle_producers(options)


if __name__ == "__main__":
    main()
