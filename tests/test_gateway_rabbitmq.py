"""The gateway in front of a real RabbitMQ 3.10 (its AMQP 1.0 plugin), as users run it
once they outgrow the embedded broker: POST, a WebSocket stream acknowledged message by
message, and request/response through a named reply queue (RabbitMQ refuses dynamic
receivers).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from gateway_fixtures import GatewayServer, unique
from rabbitmq import RabbitMQ
from websockets.sync.client import connect

from amqp_core import Message
from amqp_core.utils import BlockingConnection

#: Seconds to wait for one frame.
FRAME_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def gateway(
    rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("rabbitmq-gateway")
    with GatewayServer(folder, "--amqp-url", rabbitmq.url) as server:
        yield server


def test_posted_messages_stream_back_one_ack_at_a_time(gateway: GatewayServer) -> None:
    address = f"/queue/{unique('gateway-stream')}"
    for number in range(50):
        answer = gateway.post(address, {"number": number})
        assert answer.status_code == 201, answer.text
    url = f"{gateway.ws_url}/streams/{quote(address, safe='')}?credit=2&ack=client"
    received = []
    with connect(url, proxy=None, open_timeout=10, close_timeout=5) as socket:
        while len(received) < 50:
            frame = json.loads(socket.recv(timeout=FRAME_TIMEOUT))
            assert "error" not in frame, frame
            received.append(frame["body"]["number"])
            socket.send(json.dumps({"ack": frame["id"]}))
    assert received == list(range(50))


def test_a_request_is_answered_through_a_named_reply_queue(
    gateway: GatewayServer, rabbitmq: RabbitMQ
) -> None:
    address = f"/queue/{unique('gateway-service')}"

    # The service: take the request from the queue and answer to its reply_to.
    def serve_one() -> None:
        connection = BlockingConnection(rabbitmq.address, timeout=FRAME_TIMEOUT)
        try:
            request = connection.create_receiver(address).receive(timeout=FRAME_TIMEOUT)
            reply = Message(body=str(request.body).upper(), correlation_id=request.correlation_id)
            connection.create_sender(request.reply_to).send(reply)
        finally:
            connection.close()

    service = threading.Thread(target=serve_one)
    service.start()
    try:
        answer = gateway.http.post(
            f"/requests/{quote(address, safe='')}",
            content="Twas brillig",
            headers={"Content-Type": "text/plain", "Request-Timeout": str(FRAME_TIMEOUT)},
        )
    finally:
        service.join(FRAME_TIMEOUT)
    assert (answer.status_code, answer.text) == (200, "TWAS BRILLIG")
