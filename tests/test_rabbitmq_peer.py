"""amqp_core's clients against a real broker nobody here wrote: RabbitMQ 3.10 and its
AMQP 1.0 plugin, started once per session by the `rabbitmq` fixture (tests/rabbitmq.py).

RabbitMQ settles each message it accepts from a producer at once (settled=True): a
client must then send no disposition for it, or RabbitMQ ends the session with
amqp:internal-error ("Unexpected frame"). Several sends and receives on one session
check that.
"""

from __future__ import annotations

import uuid

import pytest
from rabbitmq import RabbitMQ

from amqp_core import Message, Timeout
from amqp_core.engine.endpoints import Endpoint
from amqp_core.utils import BlockingConnection

#: How long a test waits for something that should happen at once.
PROMPTLY = 10


def unique(prefix: str) -> str:
    """A queue name no other test (nor an earlier run) used: the node lives all session."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("form", ["/queue/{name}", "{name}"], ids=["queue-address", "bare-name"])
def test_send_and_receive_through_a_queue(rabbitmq: RabbitMQ, form: str) -> None:
    address = form.format(name=unique("peer"))
    connection = BlockingConnection(rabbitmq.url, timeout=PROMPTLY)
    try:
        # The receiver first: it declares the queue (a bare name is a routing key of the
        # default exchange, and a message to a queue that does not exist is dropped).
        receiver = connection.create_receiver(address, name=f"{address}-in")
        sender = connection.create_sender(address, name=f"{address}-out")
        for number in range(3):
            sender.send(
                Message(id=number, body={"sequence": number}, properties={"n": number}),
                timeout=PROMPTLY,
            )
        received = []
        for _ in range(3):
            message = receiver.receive(timeout=PROMPTLY)
            receiver.accept()
            received.append((message.id, message.body, message.properties))
        assert received == [(n, {"sequence": n}, {"n": n}) for n in range(3)]
        with pytest.raises(Timeout):
            receiver.receive(timeout=0.3)
        session = sender.link.session
        assert not session.state & Endpoint.REMOTE_CLOSED, session.remote_condition
    finally:
        connection.close()


def test_a_dynamic_receiver_is_refused_by_ending_the_session(rabbitmq: RabbitMQ) -> None:
    # peers.md: RabbitMQ refuses dynamic sources. It does so with an `end` carrying
    # amqp:not-implemented, not with a detach: the link is never attached.
    connection = BlockingConnection(rabbitmq.url, timeout=PROMPTLY)
    try:
        assert connection.conn is not None
        receiver = connection.container.create_receiver(
            connection.conn, None, dynamic=True, name=unique("dynamic")
        )
        session = receiver.session
        connection.wait(
            lambda: session.state & Endpoint.REMOTE_CLOSED,
            timeout=PROMPTLY,
            msg="waiting for RabbitMQ to refuse the dynamic receiver",
        )
        assert session.remote_condition is not None
        assert session.remote_condition.name == "amqp:not-implemented"
        assert receiver.state & Endpoint.REMOTE_UNINIT
        assert receiver.remote_condition is None
        # The connection survives: once this side ends the session too, the next links
        # get a new one.
        session.close()
        address = f"/queue/{unique('after-dynamic')}"
        listener = connection.create_receiver(address, name=f"{address}-in")
        connection.create_sender(address, name=f"{address}-out").send(
            Message(body="still here"), timeout=PROMPTLY
        )
        assert listener.receive(timeout=PROMPTLY).body == "still here"
        listener.accept()
    finally:
        connection.close()
