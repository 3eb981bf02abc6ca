"""Benchmark: the gateway, in one run.

1. POST /messages throughput: the gateway with its embedded broker (each POST answered
   201 only after the broker accepted the message) against a bare FastAPI endpoint that
   answers 201 at once, both run by uvicorn with the gateway's settings (its httptools
   protocol with limits: gateway.serving), loaded alike by wrk
   (Debian's `wrk`; without it, a slower Python load generator). Prints the ratio.
2. WebSocket stream: messages/s delivered to one WebSocket client (ack=auto) from a
   queue filled beforehand over AMQP.
3. Request/response latency, p50 and p99: POST /requests/examples answered by the
   tutorial's server.py through the embedded broker, one request at a time.

Absolute rates on a shared 2-core machine are noise; compare within one run.

Usage: python bench/gateway.py [--seconds S] [--connections C] [--rounds R]
                               [--stream-messages N] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets
from fastapi import FastAPI, Request

REPO = Path(__file__).resolve().parent.parent
BODY = json.dumps({"sequence": 1})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def serve_bare(port: int) -> None:
    """The baseline: the same route, answering 201 without doing anything."""
    app = FastAPI()

    @app.post("/messages/{address:path}", status_code=201)
    async def post(address: str, request: Request) -> dict[str, Any]:
        await request.body()
        return {"outcome": "accepted", "address": address, "message_id": None}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # This script's own name shadows the gateway package: import it from the repository.
    sys.path[0] = str(REPO)
    from gateway.serving import uvicorn_config
    from gateway.settings import Settings

    settings = Settings(log_level="warning")
    uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=port)).run()


class Server:
    def __init__(self, command: list[str], ready_url: str) -> None:
        self.process = subprocess.Popen(command, cwd=REPO)
        wait_until_ready(ready_url)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_gateway(http_port: int, amqp_port: int) -> Server:
    command = [sys.executable, "-m", "gateway", "--http", f"127.0.0.1:{http_port}"]
    command += ["--amqp-listen", f"127.0.0.1:{amqp_port}", "--log-level", "warning"]
    return Server(command, f"http://127.0.0.1:{http_port}/readyz")


def start_bare(port: int) -> Server:
    command = [sys.executable, __file__, "--serve-bare", str(port)]
    return Server(command, f"http://127.0.0.1:{port}/healthz")


# -- 1. POST throughput --------------------------------------------------------------------


def load_with_wrk(url: str, seconds: float, connections: int) -> float:
    """POSTs answered per second, checking every answer was 2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(BODY)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    threads = min(2, connections)
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(script.name).unlink()
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise SystemExit(f"wrk saw errors:\n{result.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if match is None:
        raise SystemExit(f"cannot read wrk's output:\n{result.stdout}")
    return float(match.group(1))


async def load_with_httpx(url: str, seconds: float, connections: int) -> float:
    limits = httpx.Limits(max_connections=connections)
    headers = {"Content-Type": "application/json"}
    count = 0
    async with httpx.AsyncClient(limits=limits) as client:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                response = await client.post(url, content=BODY, headers=headers)
                if response.status_code != 201:
                    raise SystemExit(f"answer {response.status_code}: {response.text}")
                count += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        return count / (time.perf_counter() - started)


def post_rate(url: str, seconds: float, connections: int) -> float:
    if shutil.which("wrk"):
        return load_with_wrk(url, seconds, connections)
    return asyncio.run(load_with_httpx(url, seconds, connections))


# -- 2. WebSocket stream -------------------------------------------------------------------


def fill_queue(amqp_port: int, address: str, count: int) -> None:
    """Send `count` messages over AMQP, returning once the broker accepted them all."""
    from amqp_core import Message
    from amqp_core.handlers import MessagingHandler
    from amqp_core.reactor import Container

    class Filler(MessagingHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.sent = self.accepted = 0

        def on_start(self, event: Any) -> None:
            event.container.create_sender(f"127.0.0.1:{amqp_port}/{address}")

        def on_sendable(self, event: Any) -> None:
            while event.sender.credit and self.sent < count:
                event.sender.send(Message(body={"sequence": self.sent}))
                self.sent += 1

        def on_accepted(self, event: Any) -> None:
            self.accepted += 1
            if self.accepted == count:
                event.connection.close()

    Container(Filler()).run()


async def stream_rate(http_port: int, address: str, count: int) -> float:
    url = f"ws://127.0.0.1:{http_port}/streams/{address}?credit=100&ack=auto"
    async with websockets.connect(url, max_size=None) as socket_:
        await socket_.recv()
        started = time.perf_counter()
        for _ in range(count - 1):
            await socket_.recv()
        return (count - 1) / (time.perf_counter() - started)


# -- 3. Request/response latency -------------------------------------------------------------


def request_latencies(http_port: int, amqp_port: int, count: int) -> list[float]:
    server = subprocess.Popen(
        [sys.executable, "examples/server.py", "-a", f"127.0.0.1:{amqp_port}/examples"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{http_port}/requests/examples"
        headers = {"Content-Type": "text/plain"}
        with httpx.Client() as client:
            deadline = time.monotonic() + 10
            while client.post(url, content="warm up", headers=headers).status_code != 200:
                if time.monotonic() > deadline:
                    raise SystemExit("the tutorial's server.py did not answer")
            latencies = []
            for _ in range(count):
                started = time.perf_counter()
                response = client.post(url, content="Twas brillig", headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.text != "TWAS BRILLIG":
                    raise SystemExit(f"unexpected reply: {response.status_code} {response.text}")
        return latencies
    finally:
        server.terminate()
        server.wait(timeout=10)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of each POST load")
    parser.add_argument("--connections", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--rounds", type=int, default=3, help="POST rounds, alternating")
    parser.add_argument("--stream-messages", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_bare:
        serve_bare(options.serve_bare)
        return

    http_port, amqp_port, bare_port = free_port(), free_port(), free_port()
    gateway = start_gateway(http_port, amqp_port)
    bare = start_bare(bare_port)
    try:
        loader = "wrk" if shutil.which("wrk") else "httpx (install wrk for a fairer load)"
        print(f"POST /messages, {options.connections} connections, {loader}:")
        ratios = []
        for round_number in range(1, options.rounds + 1):
            # Each round uses a fresh queue, so that the broker's memory does not pile up.
            ours = post_rate(
                f"http://127.0.0.1:{http_port}/messages/bench-{round_number}",
                options.seconds,
                options.connections,
            )
            baseline = post_rate(
                f"http://127.0.0.1:{bare_port}/messages/bench", options.seconds, options.connections
            )
            ratios.append(ours / baseline)
            print(
                f"  round {round_number}: gateway {ours:,.0f}/s, bare endpoint {baseline:,.0f}/s,"
                f" ratio {ours / baseline:.2f}"
            )
        print(f"  median ratio {statistics.median(ratios):.2f} (target: at least 0.7)")
        bare.stop()

        count = options.stream_messages
        fill_queue(amqp_port, "bench-stream", count)
        rate = asyncio.run(stream_rate(http_port, "bench-stream", count))
        print(f"WebSocket stream: {count:,} messages at {rate:,.0f} msgs/s")

        latencies = request_latencies(http_port, amqp_port, options.requests)
        print(
            f"POST /requests to the tutorial's server.py, {options.requests} sequential: "
            f"p50 {percentile(latencies, 0.5) * 1000:.2f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms"
        )
    finally:
        bare.stop()
        gateway.stop()


if __name__ == "__main__":
    main()
