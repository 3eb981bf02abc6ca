"""Benchmark: one large message through the gateway (embedded broker), each way.

1. POST /messages of an N MB application/octet-stream body (a data section).
2. The same message taken by a WebSocket stream in each frame mode: JSON (the body in
   base64 inside the frame) and binary (`?body=binary`: a JSON header frame, then the
   body's bytes in binary frames).

For each, the gateway process reports the longest stall of its event loop (a task
that sleeps 1 ms records the longest gap beyond that) and its peak resident memory
above what it held before (VmHWM, reset between runs). The gateway runs in a
subprocess of this script, with --max-body raised to fit the body. With --external it
sends to and takes from a separate `python -m amqp_core.broker` over AMQP (the engine
framing and reading the message), instead of its embedded broker.

Usage: python bench/large_bodies.py [--megabytes N] [--rounds R] [--external]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

REPO = Path(__file__).resolve().parent.parent
MEBIBYTE = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the gateway, with a loop watcher (runs in the subprocess) ------------------------------


def serve(http_port: int, amqp_port: int, amqp_url: str | None) -> None:
    # bench/gateway.py, beside this script, shadows the gateway package: take the package.
    sys.path[0] = str(REPO)
    from fastapi import FastAPI

    from gateway.__main__ import listen, serve
    from gateway.app import create_app
    from gateway.logs import configure_logging
    from gateway.serving import uvicorn_config
    from gateway.settings import Settings

    settings = Settings(
        http=f"127.0.0.1:{http_port}",
        amqp_listen=f"127.0.0.1:{amqp_port}",
        amqp_url=amqp_url,
        max_body=64 * MEBIBYTE,
        log_level="warning",
    )
    configure_logging(settings.log_level, "text")
    app: FastAPI = create_app(settings)
    longest = 0.0
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal longest
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            longest = max(longest, now - last - 0.001)
            last = now

    @app.get("/bench/probe")
    async def probe() -> dict[str, Any]:
        """The longest stall and the peak memory since the last probe; resets both."""
        nonlocal longest, watcher
        if watcher is None:
            watcher = asyncio.create_task(watch())
        status = Path("/proc/self/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        answer = {
            "longest_stall_ms": longest * 1000,
            "peak_rss_mib": int(fields["VmHWM"].split()[0]) / 1024,
            "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        }
        longest = 0.0
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
        return answer

    config = uvicorn_config(app, settings)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve(app.state.gateway, config, listen(settings.http)))


# -- the client (this process) ---------------------------------------------------------------


def probe(http: httpx.Client) -> dict[str, float]:
    answer: dict[str, float] = http.get("/bench/probe").json()
    return answer


def measured(http: httpx.Client, run: Any) -> tuple[float, float, float]:
    """(longest stall ms, peak RSS above the start MiB, seconds) of run()."""
    time.sleep(0.2)
    before = probe(http)
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    after = probe(http)
    return after["longest_stall_ms"], after["peak_rss_mib"] - before["rss_mib"], elapsed


async def take(http_port: int, address: str, mode: str, size: int) -> None:
    url = f"ws://127.0.0.1:{http_port}/streams/{address}"
    if mode == "binary":
        url += "?body=binary"
    # No compression: a browser offers it, and then both ends compress the body too.
    async with websockets.connect(url, max_size=None, compression=None) as stream:
        header = json.loads(await stream.recv())
        if mode == "binary":
            received = 0
            while received < header["body_size"]:
                received += len(await stream.recv())
        else:
            received = len(header["body"]) * 3 // 4
        if abs(received - size) > 2:
            raise SystemExit(f"{mode}: {received} bytes came, not {size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--external", action="store_true", help="a separate amqp_core.broker")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        http, amqp, url = options.serve
        serve(int(http), int(amqp), url or None)
        return

    http_port, amqp_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    broker = None
    amqp_url = ""
    if options.external:
        broker_address = f"127.0.0.1:{free_port()}"
        broker = subprocess.Popen(
            [sys.executable, "-m", "amqp_core.broker", "-a", broker_address], cwd=REPO, env=env
        )
        amqp_url = f"amqp://{broker_address}"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(http_port), str(amqp_port), amqp_url],
        cwd=REPO,
        env=env,
    )
    size = options.megabytes * MEBIBYTE
    body = os.urandom(size)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.1)
            probe(http)
            through = "an external broker" if options.external else "the embedded broker"
            print(
                f"one {options.megabytes} MB message through {through} "
                "(the gateway's longest loop stall, peak RSS growth):"
            )
            for round_number in range(1, options.rounds + 1):
                address = f"large-{round_number}"

                def post(address: str = address) -> None:
                    headers = {"Content-Type": "application/octet-stream"}
                    answer = http.post(f"/messages/{address}", content=body, headers=headers)
                    if answer.status_code != 201:
                        raise SystemExit(f"POST: {answer.status_code} {answer.text[:200]}")

                for mode in ("json", "binary"):
                    stall, growth, seconds = measured(http, post)
                    print(
                        f"  round {round_number}, POST:            stall {stall:6.1f} ms, "
                        f"RSS +{growth:6.1f} MiB, {seconds:.2f} s"
                    )
                    stall, growth, seconds = measured(
                        http,
                        lambda mode=mode, address=address: asyncio.run(
                            take(http_port, address, mode, size)
                        ),
                    )
                    print(
                        f"  round {round_number}, WebSocket {mode:6}: stall {stall:6.1f} ms, "
                        f"RSS +{growth:6.1f} MiB, {seconds:.2f} s"
                    )
    finally:
        for process in (server, broker):
            if process is not None:
                process.terminate()
                process.wait(timeout=15)


if __name__ == "__main__":
    main()
