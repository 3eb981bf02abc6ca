"""The awaitable API (amqp_core.aio) against real Proton peers: Proton's example
broker.py as the node, and Proton's server.py as the request/response service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import free_port, stop

from amqp_core import ConnectionException, Message, Timeout, aio


def test_send_awaits_outcomes_and_receive_keeps_the_credit_window(proton_broker: str) -> None:
    async def main() -> tuple[list[str], list[object], int]:
        connection = await aio.connect(proton_broker)
        sender = await connection.open_sender("aio-queue")
        outcomes = await asyncio.gather(
            *(sender.send(Message(id=n, body={"sequence": n})) for n in range(1, 101))
        )
        receiver = await connection.open_receiver("aio-queue", credit=5)
        bodies: list[object] = []
        most_in_flight = 0
        async for received in receiver:
            in_flight = receiver.link.credit + receiver.link.queued + len(receiver._ready)
            most_in_flight = max(most_in_flight, in_flight + 1)
            bodies.append(received.message.body)
            received.accept()
            if len(bodies) == 100:
                break
        await connection.close()
        return [outcome.name for outcome in outcomes], bodies, most_in_flight

    names, bodies, most_in_flight = asyncio.run(main())
    assert names == ["accepted"] * 100
    assert bodies == [{"sequence": n} for n in range(1, 101)]
    assert most_in_flight <= 5


def test_a_receiver_nobody_reads_holds_no_more_than_its_window(proton_broker: str) -> None:
    async def main() -> tuple[int, int]:
        connection = await aio.connect(proton_broker)
        sender = await connection.open_sender("slow-queue")
        for n in range(50):
            await sender.send(Message(body=n))
        receiver = await connection.open_receiver("slow-queue", credit=3)
        await asyncio.sleep(0.5)  # the application does not read
        held = len(receiver._ready) + receiver.link.queued
        granted = receiver.link.credit
        await connection.close()
        return held, granted

    held, granted = asyncio.run(main())
    assert held == 3
    assert granted == 0


def test_request_reply_with_protons_server(proton_broker: str, proton_examples: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(proton_examples / "server.py"), "-a", f"{proton_broker}/examples"],
        stdout=subprocess.DEVNULL,
    )
    try:

        async def main() -> list[object]:
            connection = await aio.connect(proton_broker)
            # The server attaches its receiver a moment after starting: retry the
            # first request until it answers.
            for _ in range(50):
                try:
                    await connection.request(Message(address="examples", body="ping"), 0.2)
                    break
                except Timeout:
                    continue
            replies = await asyncio.gather(
                *(
                    connection.request(Message(address="examples", body=f"twas {n}"), 10)
                    for n in range(40)
                )
            )
            await connection.close()
            return [reply.body for reply in replies]

        assert asyncio.run(main()) == [f"TWAS {n}" for n in range(40)]
    finally:
        stop(server)


def test_request_without_a_server_times_out(proton_broker: str) -> None:
    async def main() -> float:
        connection = await aio.connect(proton_broker)
        started = time.monotonic()
        with pytest.raises(Timeout):
            await connection.request(Message(address="nobody-home", body="x"), timeout=0.5)
        elapsed = time.monotonic() - started
        await connection.close()
        return elapsed

    assert 0.4 <= asyncio.run(main()) < 5


def test_connect_to_a_closed_port_fails_at_once() -> None:
    port = free_port()

    async def main() -> None:
        await aio.connect(f"127.0.0.1:{port}", timeout=5)

    started = time.monotonic()
    with pytest.raises(ConnectionException):
        asyncio.run(main())
    assert time.monotonic() - started < 3
