"""The blocking utilities (amqp_core.utils) against real Proton peers: Proton's example
broker.py as the node and Proton's server.py as the request/response service."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import free_port, stop

from amqp_core import ConnectionException, Delivery, Message, Timeout
from amqp_core.utils import BlockingConnection, SyncRequestResponse


def test_blocking_send_and_receive(proton_broker: str) -> None:
    connection = BlockingConnection(proton_broker, timeout=10)
    try:
        sender = connection.create_sender("blocking-queue")
        deliveries = [sender.send(Message(id=n, body={"sequence": n})) for n in range(1, 21)]
        assert {delivery.remote_state for delivery in deliveries} == {Delivery.ACCEPTED}
        receiver = connection.create_receiver("blocking-queue", credit=5)
        bodies = []
        for _ in range(20):
            bodies.append(receiver.receive(timeout=5).body)
            receiver.accept()
        assert bodies == [{"sequence": n} for n in range(1, 21)]
        started = time.monotonic()
        with pytest.raises(Timeout):
            receiver.receive(timeout=0.3)
        assert time.monotonic() - started < 3
    finally:
        connection.close()


def test_released_messages_come_back(our_broker: str) -> None:
    connection = BlockingConnection(our_broker, timeout=10)
    try:
        connection.create_sender("release-queue").send(Message(body="again"))
        receiver = connection.create_receiver("release-queue")
        assert receiver.receive(timeout=5).body == "again"
        receiver.release(delivered=False)
        assert receiver.receive(timeout=5).body == "again"
        receiver.accept()
    finally:
        connection.close()


def test_sync_request_response_with_protons_server(
    proton_broker: str, proton_examples: Path
) -> None:
    server = subprocess.Popen(
        [sys.executable, str(proton_examples / "server.py"), "-a", f"{proton_broker}/examples"],
        stdout=subprocess.DEVNULL,
    )
    connection = BlockingConnection(proton_broker, timeout=10)
    try:
        client = SyncRequestResponse(connection, "examples")
        replies = []
        for text in ("Twas brillig", "and the slithy toves"):
            # The server may still be attaching: the first request waits for it.
            replies.append(client.call(Message(body=text)).body)
        assert replies == ["TWAS BRILLIG", "AND THE SLITHY TOVES"]
    finally:
        connection.close()
        stop(server)


def test_connecting_to_a_closed_port_raises() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionException):
        BlockingConnection(f"127.0.0.1:{free_port()}", timeout=5)
    assert time.monotonic() - started < 3
