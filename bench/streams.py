"""Benchmark: how many idle WebSocket streams one gateway holds, and what each costs.

Starts the gateway (with its embedded broker, or with --external in front of a separate
`python -m amqp_core.broker`), opens N streams each on its own address from this
process (a bare asyncio WebSocket client, tests/websocket_swarm.py), then prints:
the time to open them all, the gateway's resident memory per idle stream, its CPU while
they idle, and the time to POST one message to each address and see every stream get
its own. --compression offers permessage-deflate as browsers do (and starts the gateway
with --ws-compression, else the gateway declines it).

Absolute times on a shared 2-core machine are noise; memory per stream is not.

Usage: python bench/streams.py [--streams N] [--external] [--compression] [--idle S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import websocket_swarm  # noqa: E402
from gateway_fixtures import GatewayServer, amqp_broker, unique  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DeflateClient(websocket_swarm.StreamClient):
    """Offers permessage-deflate in its upgrade request, as browsers do."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        transport.write(request.encode())  # type: ignore[attr-defined]


async def open_count(http: httpx.AsyncClient, count: int, timeout: float = 600) -> None:
    key = 'gateway_open_streams{kind="websocket"}'
    deadline = time.monotonic() + timeout
    while True:
        text = (await http.get("/metrics")).text
        lines = [line for line in text.splitlines() if line.startswith(key)]
        if lines and float(lines[0].split()[-1]) == count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the streams were not all open in {timeout} s")
        await asyncio.sleep(0.2)


async def measure(gateway: GatewayServer, count: int, compression: bool, idle: float) -> None:
    if compression:
        websocket_swarm.StreamClient = DeflateClient  # type: ignore[misc]
    addresses = [unique(f"bench-{index}") for index in range(count)]
    paths = [f"/streams/{address}" for address in addresses]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120, trust_env=False) as http:
        rss_before = gateway.rss_kib()
        started = time.monotonic()
        clients = await websocket_swarm.open_streams("127.0.0.1", gateway.http_port, paths)
        await open_count(http, count)
        opened = time.monotonic() - started
        await asyncio.sleep(2)
        rss_held = gateway.rss_kib()
        cpu_before = cpu_seconds(gateway.pid)
        await asyncio.sleep(idle)
        idle_cpu = (cpu_seconds(gateway.pid) - cpu_before) / idle
        print(f"streams held:               {count}")
        print(f"time to open them:          {opened:.1f} s")
        print(f"RSS per idle stream:        {(rss_held - rss_before) / count:.1f} KiB")
        print(f"CPU while they idle:        {idle_cpu * 100:.1f} % of a core")
        if not compression:
            gate = asyncio.Semaphore(32)

            async def post(address: str) -> None:
                async with gate:
                    answer = await http.post(f"/messages/{address}", json={"for": address})
                    assert answer.status_code == 201, answer.text

            started = time.monotonic()
            await asyncio.gather(*(post(address) for address in addresses))
            texts = await asyncio.gather(*(client.next_text(600) for client in clients))
            assert all(address in text for address, text in zip(addresses, texts, strict=True))
            print(f"POST one to each, all got:  {time.monotonic() - started:.1f} s")
        await websocket_swarm.close_all(clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--external", action="store_true", help="an amqp-broker process")
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to watch the CPU")
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * options.streams + 1000), hard))
    extra = ["--log-level", "warning"] + (["--ws-compression"] if options.compression else [])
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as running:
        if options.external:
            broker, address = amqp_broker(Path(folder))
            running.enter_context(broker)
            extra += ["--amqp-url", f"amqp://{address}"]
        gateway = running.enter_context(GatewayServer(Path(folder), *extra))
        asyncio.run(measure(gateway, options.streams, options.compression, options.idle))


if __name__ == "__main__":
    main()
