"""Bad input on a real listening Container costs that one connection and nothing else.

A `Container` listens on a free port (in a thread of its own, with its own event loop)
and runs a small queue broker. Raw sockets send it what no AMQP peer should: garbage,
a wrong protocol header, an oversized frame, bytes that are not a performative, a
transfer on a handle that was never attached, a transfer without credit. Each gets, on
that socket, a close frame naming the right AMQP error condition (or, for a wrong
header, our protocol header and then end of stream). Meanwhile a well-behaved Proton
client, connected before the bad one and another connected after, still send and
receive. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from engine_harness import FrameDecoder, FrameRecord

from amqp_core import spec
from amqp_core.framing import AMQP_HEADER, FRAME_AMQP, SASL_HEADER, encode_frame
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container

proton = pytest.importorskip("proton")
proton_utils = pytest.importorskip("proton.utils")

TIMEOUT = 10.0
#: Links to this address get no credit from the broker.
NO_CREDIT = "no-credit"


class QueueBroker(MessagingHandler):
    """Queues by address: what arrives on a link to X goes to links from X."""

    def __init__(self) -> None:
        super().__init__(prefetch=0)  # credit is granted below, per link
        self.queues: dict[str, collections.deque[Any]] = collections.defaultdict(collections.deque)
        self.consumers: dict[str, list[Any]] = collections.defaultdict(list)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.acceptor: Any = None
        self.startup_error: BaseException | None = None

    def on_start(self, event: Any) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            self.acceptor = event.container.listen("127.0.0.1:0")
        except BaseException as error:
            self.startup_error = error
            raise
        finally:
            self.ready.set()

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            address = link.remote_source.address
            link.source.address = address
            self.consumers[address].append(link)
        else:
            link.target.address = link.remote_target.address
            if link.remote_target.address != NO_CREDIT:
                link.flow(10)

    def on_link_closing(self, event: Any) -> None:
        self._forget(event.link)

    def on_disconnected(self, event: Any) -> None:
        for links in self.consumers.values():
            links[:] = [link for link in links if link.connection is not event.connection]

    def _forget(self, link: Any) -> None:
        for links in self.consumers.values():
            if link in links:
                links.remove(link)

    def on_sendable(self, event: Any) -> None:
        self._deliver(event.link.source.address)

    def on_message(self, event: Any) -> None:
        link = event.link
        address = link.target.address
        self.queues[address].append(event.message)
        link.flow(1)
        self._deliver(address)

    def _deliver(self, address: str) -> None:
        queue = self.queues[address]
        for link in self.consumers[address]:
            while queue and link.credit:
                link.send(queue.popleft())


class RunningServer:
    def __init__(self, broker: QueueBroker, container: Container, thread: threading.Thread):
        self.broker = broker
        self.container = container
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.broker.acceptor.port)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    broker = QueueBroker()
    container = Container(broker)
    thread = threading.Thread(target=container.run, name="amqp-container", daemon=True)
    thread.start()
    assert broker.ready.wait(TIMEOUT), "the container did not start"
    if broker.startup_error is not None:
        raise broker.startup_error
    running = RunningServer(broker, container, thread)
    try:
        yield running
    finally:
        assert broker.loop is not None
        broker.loop.call_soon_threadsafe(container.stop)
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the container did not stop"


@pytest.fixture(scope="module")
def early_client(server: RunningServer) -> Iterator[Any]:
    """A well-behaved client connected before any bad input arrives."""
    connection = proton_utils.BlockingConnection(server.url, timeout=TIMEOUT)
    try:
        yield connection
    finally:
        connection.close()


_addresses = itertools.count()


def round_trip(connection: Any) -> None:
    """Send a message through the broker and get it back, on `connection`."""
    address = f"check-{next(_addresses)}"
    receiver = connection.create_receiver(address, credit=1)
    sender = connection.create_sender(address)
    body = f"still serving {address}"
    sender.send(proton.Message(body=body))
    received = receiver.receive(timeout=TIMEOUT)
    receiver.accept()
    assert received.body == body
    sender.close()
    receiver.close()


def assert_still_serving(server: RunningServer, early_client: Any) -> None:
    round_trip(early_client)
    late_client = proton_utils.BlockingConnection(server.url, timeout=TIMEOUT)
    try:
        round_trip(late_client)
    finally:
        late_client.close()


def exchange(server: RunningServer, data: bytes) -> tuple[list[FrameRecord], bool]:
    """Send `data` on a fresh socket; read until end of stream (or the timeout).
    Return what came back, cut into headers and frames, and whether it ended."""
    decoder = FrameDecoder()
    ended = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                ended = True
                break
            decoder.feed(chunk)
    return decoder.records, ended


def frames(*performatives: Any) -> bytes:
    out = bytearray(AMQP_HEADER)
    for performative in performatives:
        channel, payload = 0, b""
        if isinstance(performative, tuple):
            performative, payload = performative
        encode_frame(out, FRAME_AMQP, channel, performative, payload)
    return bytes(out)


def raw_frame(body: bytes, size: int | None = None) -> bytes:
    """A frame header (size, data offset 2, AMQP, channel 0) and `body` as given."""
    return struct.pack(">IBBH", size if size is not None else 8 + len(body), 2, 0, 0) + body


def close_condition(records: list[FrameRecord]) -> str | None:
    closes = [record.body for record in records if isinstance(record.body, spec.Close)]
    assert len(closes) == 1, f"expected one close frame, got {[r.name for r in records]}"
    error = closes[0].error
    return str(error.condition) if error is not None else None


OPEN = spec.Open(container_id="bad-client")
BEGIN = spec.Begin(next_outgoing_id=0, incoming_window=100, outgoing_window=100)


def test_listening_on_port_0_takes_a_free_port(server):
    """Port 0 asks the kernel for any free port, as with a plain socket; it must not
    fall back to AMQP's 5672 (which another server may hold)."""
    assert server.port != 5672
    assert server.port > 0


def test_a_well_behaved_client_is_served(server, early_client):
    assert_still_serving(server, early_client)


WRONG_HEADERS = {
    "garbage": bytes(range(200, 256)) * 4,
    "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + bytes(40),
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "amqp-0-9-1": b"AMQP\x00\x00\x09\x01",
    "pre-standard-amqp": b"AMQP\x01\x01\x00\x00",
}


@pytest.mark.parametrize("data", WRONG_HEADERS.values(), ids=WRONG_HEADERS.keys())
def test_a_wrong_protocol_header_gets_ours_then_end_of_stream(server, early_client, data):
    records, ended = exchange(server, data)
    assert [record.header for record in records] in ([AMQP_HEADER], [SASL_HEADER])
    assert ended, "the server did not close the socket"
    assert_still_serving(server, early_client)


BAD_FRAMES = {
    "garbage-frame": (raw_frame(b"\xff" * 24), "amqp:decode-error"),
    "zero-bytes": (bytes(64), "amqp:connection:framing-error"),
    "frame-smaller-than-its-header": (raw_frame(b"", size=4), "amqp:connection:framing-error"),
    "data-offset-past-the-end": (
        struct.pack(">IBBH", 16, 9, 0, 0) + bytes(8),
        "amqp:connection:framing-error",
    ),
    "over-max-frame-size": (raw_frame(b"", size=64 * 1024 * 1024), "amqp:connection:framing-error"),
    "performative-with-bad-bytes": (raw_frame(b"\x00\x53\x11\xd0\xff\xff"), "amqp:decode-error"),
    "unknown-constructor": (raw_frame(b"\x00\x53\x11\xc0\x03\x01\xee\x00"), "amqp:decode-error"),
    "truncated-performative": (raw_frame(b"\x00\x53\x11\xc0\x10\x05\x40"), "amqp:decode-error"),
}


@pytest.mark.parametrize(("data", "condition"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_malformed_frame_closes_with_the_right_condition(server, early_client, data, condition):
    records, ended = exchange(server, frames(OPEN) + data)
    assert [record.header for record in records if record.header] == [AMQP_HEADER]
    assert close_condition(records) == condition
    assert ended
    assert_still_serving(server, early_client)


NOT_PERFORMATIVES = {
    "a-string": "hello",
    "an-integer": 42,
    "a-list": [1, 2, 3],
    "a-source": spec.Source(address="q"),
    "a-message-section": spec.AmqpValue("body"),
}


@pytest.mark.parametrize("value", NOT_PERFORMATIVES.values(), ids=NOT_PERFORMATIVES.keys())
def test_a_valid_amqp_value_that_is_not_a_performative_is_a_decode_error(
    server, early_client, value
):
    records, ended = exchange(server, frames(OPEN, value))
    assert close_condition(records) == "amqp:decode-error"
    assert ended
    assert_still_serving(server, early_client)


def test_a_performative_with_a_field_of_the_wrong_type_is_a_decode_error(server, early_client):
    # An open whose container-id is an int.
    body = b"\x00\x53\x10\xc0\x06\x01\x71\x00\x00\x00\x05"
    records, ended = exchange(server, AMQP_HEADER + raw_frame(body))
    assert close_condition(records) == "amqp:decode-error"
    assert ended
    assert_still_serving(server, early_client)


def test_a_begin_before_open_is_not_allowed(server, early_client):
    records, ended = exchange(server, frames(BEGIN))
    assert close_condition(records) == "amqp:not-allowed"
    assert ended
    assert_still_serving(server, early_client)


def test_a_transfer_on_an_unattached_handle(server, early_client):
    transfer = spec.Transfer(handle=7, delivery_id=0, delivery_tag=b"t")
    records, ended = exchange(server, frames(OPEN, BEGIN, (transfer, b"payload")))
    assert close_condition(records) == "amqp:session:unattached-handle"
    assert ended
    assert_still_serving(server, early_client)


def test_a_transfer_without_credit(server, early_client):
    attach = spec.Attach(
        name="pushy",
        handle=0,
        role=False,
        source=spec.Source(address="pushy"),
        target=spec.Target(address=NO_CREDIT),
        initial_delivery_count=0,
    )
    transfer = spec.Transfer(handle=0, delivery_id=0, delivery_tag=b"t")
    records, ended = exchange(server, frames(OPEN, BEGIN, attach, (transfer, b"payload")))
    assert close_condition(records) == "amqp:link:transfer-limit-exceeded"
    assert ended
    assert_still_serving(server, early_client)


def test_a_peer_that_vanishes_mid_frame_costs_nothing(server, early_client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(frames(OPEN)[:-3])
    assert_still_serving(server, early_client)


def test_garbage_during_sasl_ends_the_connection(server, early_client):
    records, ended = exchange(server, SASL_HEADER + raw_frame(b"\xff" * 16))
    assert [record.header for record in records if record.header] == [SASL_HEADER]
    assert ended
    assert_still_serving(server, early_client)
