"""The embedded broker (`python -m amqp_core.broker`) survives abusive clients, and its
other clients keep getting their messages:

- a consumer that takes messages and never settles them holds at most its credit
  window; the other consumers of its queue get the rest, and what it held goes to them
  once it is gone;
- a consumer or a producer that leaves its link without closing it (a detach with
  closed=false, or the end of its session) while its connection stays open is answered
  and leaves nothing behind: what it held goes back to the queue, nothing more is sent
  to it, and the credit promised to it is free again;
- connections that vanish (a bare TCP connect, a protocol header and nothing more, a
  consumer closing its socket or resetting it with messages unsettled, in the middle of
  a large transfer either way, a client process killed with SIGKILL) cost nothing: the
  broker stays up, its next client is served, and the vanished consumers' messages are
  delivered to others, intact and once;
- garbage on a connection (random bytes, a valid header and then junk, an oversized
  frame) closes that connection, with the AMQP error condition the protocol allows, and
  no other;
- a producer pushing far more than `--max-queue-depth` gets no credit once the queue is
  full, so it waits instead of having messages dropped; every message accepted is
  delivered, once and in order; a producer that sends without credit is cut off with
  ``amqp:link:transfer-limit-exceeded``; clients of other queues keep flowing meanwhile;
- the broker's memory (VmRSS of its process) stays bounded through floods of 10 kB
  messages and hundreds of vanishing consumers.

The broker runs as a subprocess on a free port, its output in a log file shown when it
dies; the abusive clients are raw sockets writing AMQP frames by hand (they do exactly
what the test says, nothing more), the well-behaved ones Qpid Proton's blocking client.
Every wait is bounded, and every process is stopped by its PID.
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proton
import proton.utils
import pytest
from engine_harness import FrameDecoder
from processes import free_port, stop, wait_for_port

from amqp_core import spec
from amqp_core.framing import AMQP_HEADER, FRAME_AMQP, SASL_HEADER, encode_frame

REPO = Path(__file__).resolve().parent.parent

#: How long a test waits for something that should happen at once (generous: the
#: machine is shared and loaded).
PROMPTLY = 10.0
#: How long a test watches for something that must not happen.
QUIETLY = 0.5

# -- the broker -------------------------------------------------------------------------


@dataclass
class RunningBroker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rss(self) -> int:
        """The broker process's resident set size, in bytes (VmRSS in /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.process.pid}/status")

    def assert_alive(self) -> None:
        code = self.process.poll()
        assert code is None, f"the broker died (exit {code}):\n{self.log.read_text()[-3000:]}"


def _start(log: Path, options: tuple[str, ...]) -> RunningBroker:
    port = free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}", *options],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
    except BaseException:
        stop(process)
        raise
    return RunningBroker(process, port, log)


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., RunningBroker]]:
    """Start `python -m amqp_core.broker` with these options; stopped after the test."""
    started: list[RunningBroker] = []

    def start(*options: str) -> RunningBroker:
        broker = _start(tmp_path / f"broker-{len(started)}.log", options)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        stop(broker.process)


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """One broker for the tests that only need it to survive them."""
    broker = _start(tmp_path_factory.mktemp("broker") / "broker.log", ())
    yield broker
    stop(broker.process)


def receive_all(receiver: Any, count: int, window: int = 20) -> list[Any]:
    """Receive `count` messages, accepting each, with the receiver's credit kept topped
    up (Proton's blocking receiver alone asks for one message at a time)."""
    bodies = []
    for _ in range(count):
        if receiver.link.credit < window // 2:
            receiver.link.flow(window - receiver.link.credit)
        bodies.append(receiver.receive(timeout=PROMPTLY).body)
        receiver.accept()
    return bodies


def assert_nothing_more(receiver: Any) -> None:
    with pytest.raises(proton.Timeout):
        extra = receiver.receive(timeout=QUIETLY)
        pytest.fail(f"got an extra message: {extra.body!r}")


def assert_served(broker: RunningBroker, address: str = "still-serving") -> None:
    """The broker is up and a new client sends and receives through it."""
    broker.assert_alive()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    try:
        sender = connection.create_sender(address, name="check-sender")
        receiver = connection.create_receiver(address, name="check-receiver")
        sender.send(proton.Message(body=f"hello {address}"))
        assert receiver.receive(timeout=PROMPTLY).body == f"hello {address}"
        receiver.accept()
    finally:
        connection.close()


class Bystander:
    """A well-behaved client connected before the abuse: it must still be served after."""

    def __init__(self, url: str, address: str = "bystander") -> None:
        self.connection = proton.utils.BlockingConnection(url, timeout=PROMPTLY)
        self.sender = self.connection.create_sender(address, name="bystander-sender")
        self.receiver = self.connection.create_receiver(address, name="bystander-receiver")
        self.count = 0
        self.round_trip()

    def round_trip(self) -> None:
        self.count += 1
        body = f"bystander message {self.count}"
        self.sender.send(proton.Message(body=body))
        assert self.receiver.receive(timeout=PROMPTLY).body == body
        self.receiver.accept()

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def bystander(shared_broker: RunningBroker) -> Iterator[Bystander]:
    client = Bystander(shared_broker.url)
    yield client
    client.close()


# -- a client written frame by frame ----------------------------------------------------

#: A small max-frame-size, so that a large message comes in many frames.
OPEN = spec.Open(container_id="abuser", max_frame_size=16 * 1024)
BEGIN = spec.Begin(next_outgoing_id=0, incoming_window=10_000, outgoing_window=10_000)


def frames(*performatives: Any, header: bool = False) -> bytes:
    """AMQP frames on channel 0; a (performative, payload) pair for a transfer."""
    out = bytearray(AMQP_HEADER if header else b"")
    for performative in performatives:
        payload = b""
        if isinstance(performative, tuple):
            performative, payload = performative
        encode_frame(out, FRAME_AMQP, 0, performative, payload)
    return bytes(out)


class RawClient:
    """An AMQP client on a plain socket that does what the test says and nothing else:
    it never settles, never tops its credit up, and can vanish at any moment."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Set before connecting, so that the window the broker sees is small too.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(PROMPTLY)
        self.sock.connect(("127.0.0.1", port))
        self.decoder = FrameDecoder()
        self.ended = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, condition: Callable[[], bool], what: str) -> None:
        """Read until `condition()` holds; fail if the stream ends or time runs out."""
        deadline = time.monotonic() + PROMPTLY
        while not condition():
            remaining = deadline - time.monotonic()
            assert remaining > 0 and not self.ended, f"no {what}; got {self.names()}"
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                self.ended = True
            self.decoder.feed(chunk)

    def read_until_end(self) -> None:
        """Read until the broker ends the stream, then close our end."""
        self.read_until(lambda: self.ended, "end of stream")
        self.sock.close()

    def read_available(self) -> None:
        """Take in whatever has arrived, without waiting."""
        while not self.ended:
            ready, _, _ = select.select([self.sock], [], [], 0)
            if not ready:
                return
            chunk = self.sock.recv(65536)
            self.ended = not chunk
            self.decoder.feed(chunk)

    def performatives(self, kind: type) -> list[Any]:
        return [record.body for record in self.decoder.records if isinstance(record.body, kind)]

    def names(self) -> list[str]:
        return [
            repr(record.header) if record.header else type(record.body).__name__
            for record in self.decoder.records
        ]

    def close_condition(self) -> str | None:
        closes = self.performatives(spec.Close)
        assert len(closes) == 1, f"expected one close frame, got {self.names()}"
        error = closes[0].error
        return str(error.condition) if error is not None else None

    def complete_transfers(self) -> int:
        """How many messages arrived whole (cheaper than decoding them)."""
        return sum(
            1
            for record in self.decoder.records
            if isinstance(record.body, spec.Transfer) and not record.body.more
        )

    def messages(self) -> list[proton.Message]:
        """The messages that arrived whole (a transfer's payload spans its frames)."""
        messages, payload = [], b""
        for record in self.decoder.records:
            if isinstance(record.body, spec.Transfer):
                payload += record.payload
                if not record.body.more:
                    message = proton.Message()
                    message.decode(payload)
                    messages.append(message)
                    payload = b""
        return messages

    def bodies(self) -> list[Any]:
        return [message.body for message in self.messages()]

    def open_receiver(self, address: str, credit: int) -> None:
        """Attach a receiver from `address` and give it `credit`, once."""
        attach = spec.Attach(
            name=f"raw-receiver-{address}",
            handle=0,
            role=True,
            source=spec.Source(address=address),
            target=spec.Target(),
        )
        self.send(frames(OPEN, BEGIN, attach, header=True))
        self.read_until(lambda: bool(self.performatives(spec.Attach)), "attach")
        (begin,) = self.performatives(spec.Begin)
        flow = spec.Flow(
            next_incoming_id=begin.next_outgoing_id,
            incoming_window=10_000,
            next_outgoing_id=0,
            outgoing_window=10_000,
            handle=0,
            delivery_count=0,
            link_credit=credit,
        )
        self.send(frames(flow))

    def open_sender(self, address: str) -> int:
        """Attach a sender to `address`; return the credit the broker gives it."""
        attach = spec.Attach(
            name=f"raw-sender-{address}",
            handle=0,
            role=False,
            source=spec.Source(),
            target=spec.Target(address=address),
            initial_delivery_count=0,
        )
        self.send(frames(OPEN, BEGIN, attach, header=True))
        self.read_until(lambda: bool(self.performatives(spec.Flow)), "flow")
        return int(self.performatives(spec.Flow)[-1].link_credit)

    def vanish(self, reset: bool) -> None:
        """Close the socket with no AMQP close: a FIN, or a RST if `reset`."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def transfer(number: int, *, more: bool = False) -> spec.Transfer:
    return spec.Transfer(
        handle=0, delivery_id=number, delivery_tag=b"%d" % number, message_format=0, more=more
    )


# -- consumers that never settle ----------------------------------------------------------


def test_a_consumer_that_never_settles_holds_only_its_credit_window(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker()
    sender = connect(broker.url).create_sender("work", name="producer")
    for number in range(30):
        sender.send(proton.Message(body=number))

    hoarder = RawClient(broker.port)
    hoarder.open_receiver("work", credit=5)
    hoarder.read_until(lambda: hoarder.complete_transfers() == 5, "five messages")
    assert hoarder.bodies() == [0, 1, 2, 3, 4]

    receiver = connect(broker.url).create_receiver("work", name="consumer", credit=10)
    assert receive_all(receiver, 25) == list(range(5, 30))
    # The hoarder's five are its own while it is attached: nobody else gets them...
    assert_nothing_more(receiver)
    # ...and it got nothing past its credit, though 25 more messages went by.
    hoarder.read_available()
    assert hoarder.bodies() == [0, 1, 2, 3, 4]

    hoarder.vanish(reset=True)
    assert receive_all(receiver, 5) == [0, 1, 2, 3, 4]
    assert_nothing_more(receiver)
    broker.assert_alive()


# -- links that leave without a close ---------------------------------------------------

#: Ways a client leaves a link behind with its connection still open: a detach with
#: closed=false (what a JMS durable subscriber sends when it closes), or the end of the
#: link's session, which detaches its links implicitly.
LEAVING = ("detach", "end of session")


def leave_without_closing(client: RawClient, how: str) -> None:
    """Leave the raw client's link as `how` says; wait for the broker's answer."""
    if how == "detach":
        client.send(frames(spec.Detach(handle=0, closed=False)))
        client.read_until(lambda: bool(client.performatives(spec.Detach)), "detach in answer")
    else:
        client.send(frames(spec.End()))
        client.read_until(lambda: bool(client.performatives(spec.End)), "end in answer")


@pytest.mark.parametrize("how", LEAVING)
def test_a_consumer_that_leaves_without_a_close_gives_its_messages_back(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any], how: str
) -> None:
    broker = start_broker()
    sender = connect(broker.url).create_sender("work", name="producer")
    for number in range(3):
        sender.send(proton.Message(body=number))
    leaving = RawClient(broker.port)
    leaving.open_receiver("work", credit=10)
    leaving.read_until(lambda: leaving.complete_transfers() == 3, "three messages")

    leave_without_closing(leaving, how)
    for number in range(3, 6):
        sender.send(proton.Message(body=number))
    # The broker offers no link recovery: what the link held goes back to the queue, as
    # after a close, and nothing more is sent to it, though its connection stays open.
    other = connect(broker.url).create_receiver("work", name="other")
    try:
        received = receive_all(other, 6)
    except proton.Timeout:
        pytest.fail("messages are still held for the link that left")
    assert sorted(received) == [0, 1, 2, 3, 4, 5]
    assert_nothing_more(other)
    leaving.read_available()
    assert not leaving.ended
    assert leaving.complete_transfers() == 3
    leaving.vanish(reset=False)


@pytest.mark.parametrize("how", LEAVING)
def test_a_producer_that_leaves_without_a_close_leaves_no_credit_behind(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any], how: str
) -> None:
    broker = start_broker("--max-queue-depth", "10")
    leaving = RawClient(broker.port)
    assert leaving.open_sender("bounded") == 10  # the whole room, promised to it

    leave_without_closing(leaving, how)
    # The queue is empty: the credit promised to the link that left is free again.
    live = connect(broker.url)
    try:
        live.create_sender("bounded", name="live").send(proton.Message(body="room"), PROMPTLY)
    except proton.Timeout:
        pytest.fail("no credit for a producer of an empty queue")
    receiver = live.create_receiver("bounded", name="consumer")
    assert receive_all(receiver, 1) == ["room"]
    leaving.vanish(reset=False)


# -- connections that vanish ------------------------------------------------------------

VANISHING_KINDS = (
    "tcp connect, then close",
    "protocol header, then close",
    "consumer with messages, then close (FIN)",
    "consumer with messages, then reset (RST)",
)


def vanish_once(broker: RunningBroker, kind: str, address: str, credit: int) -> list[Any]:
    """Connect as `kind` says and vanish; return what a consumer was sent meanwhile."""
    if kind == "tcp connect, then close":
        socket.create_connection(("127.0.0.1", broker.port), timeout=PROMPTLY).close()
        return []
    if kind == "protocol header, then close":
        with socket.create_connection(("127.0.0.1", broker.port), timeout=PROMPTLY) as sock:
            sock.sendall(AMQP_HEADER)
        return []
    client = RawClient(broker.port)
    client.open_receiver(address, credit=credit)
    client.read_until(lambda: client.complete_transfers() == credit, f"{credit} messages")
    client.vanish(reset=kind.endswith("(RST)"))
    return client.bodies()


def test_two_hundred_vanishing_connections_cost_nothing(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker()
    sender = connect(broker.url).create_sender("jobs", name="producer")
    for number in range(20):
        sender.send(proton.Message(body=number))

    for cycle in range(200):
        kind = VANISHING_KINDS[cycle % len(VANISHING_KINDS)]
        taken = vanish_once(broker, kind, "jobs", credit=3)
        # 100 consumers took three messages each from a queue of 20 and never settled
        # them: every one of them got three only because the messages of those before
        # it came back.
        assert len(taken) == (3 if "consumer" in kind else 0), f"cycle {cycle}: {kind}"

    broker.assert_alive()
    receiver = connect(broker.url).create_receiver("jobs", name="survivor")
    assert receive_all(receiver, 20) == list(range(20))
    assert_nothing_more(receiver)
    assert_served(broker)


def test_a_consumer_that_vanishes_mid_transfer_leaves_the_message_intact(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker()
    large = os.urandom(4 * 1024 * 1024)
    sender = connect(broker.url).create_sender("large", name="producer")
    sender.send(proton.Message(body=large))
    sender.send(proton.Message(body="after it"))

    for cycle in range(10):
        # A tiny receive buffer: the broker cannot write the 4 MB message out, so the
        # consumer vanishes with the transfer half done on the broker's side too.
        client = RawClient(broker.port, receive_buffer=16 * 1024)
        client.open_receiver("large", credit=1)
        client.read_until(lambda c=client: bool(c.performatives(spec.Transfer)), "a transfer")
        assert client.performatives(spec.Transfer)[0].more, "the message came in one frame"
        client.vanish(reset=cycle % 2 == 0)

    receiver = connect(broker.url).create_receiver("large", name="consumer", credit=2)
    message = receiver.receive(timeout=PROMPTLY)
    receiver.accept()
    assert message.body == large
    assert receive_all(receiver, 1) == ["after it"]
    assert_nothing_more(receiver)


def test_a_producer_that_vanishes_mid_transfer_queues_nothing(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker()
    encoded = proton.Message(body=os.urandom(500_000)).encode()
    for cycle in range(10):
        client = RawClient(broker.port)
        assert client.open_sender("partial") > 0
        # Two frames of a message of three, then gone.
        client.send(
            frames(
                (transfer(0, more=True), encoded[:200_000]),
                (spec.Transfer(handle=0, more=True), encoded[200_000:400_000]),
            )
        )
        client.vanish(reset=cycle % 2 == 0)

    connection = connect(broker.url)
    receiver = connection.create_receiver("partial", name="consumer")
    assert_nothing_more(receiver)
    connection.create_sender("partial", name="producer").send(proton.Message(body="whole"))
    assert receiver.receive(timeout=PROMPTLY).body == "whole"


#: A consumer program killed with SIGKILL: it takes five messages and never settles.
DOOMED_CONSUMER = """
import sys
import proton.utils
connection = proton.utils.BlockingConnection(sys.argv[1], timeout=30)
receiver = connection.create_receiver("orders", name="doomed", credit=5)
for _ in range(5):
    print(receiver.receive().body, flush=True)
connection.wait(lambda: False)  # holds them until killed (or for 30 s)
"""


def read_lines(process: subprocess.Popen[bytes], count: int) -> list[str]:
    """`count` lines of a process's output, waiting at most PROMPTLY for them."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + PROMPTLY
    while output.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([descriptor], [], [], max(remaining, 0))
        assert ready, f"got {output!r} from the client, not {count} lines"
        chunk = os.read(descriptor, 4096)
        assert chunk, f"the client ended after {output!r} (exit {process.poll()})"
        output += chunk
    return output.decode().splitlines()[:count]


def test_messages_of_a_consumer_killed_with_sigkill_are_redelivered(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker()
    sender = connect(broker.url).create_sender("orders", name="producer")
    for number in range(10):
        sender.send(proton.Message(body=number))

    doomed = subprocess.Popen(
        [sys.executable, "-c", DOOMED_CONSUMER, broker.url], stdout=subprocess.PIPE
    )
    try:
        assert read_lines(doomed, 5) == ["0", "1", "2", "3", "4"]
        doomed.kill()
        doomed.wait(timeout=PROMPTLY)
    finally:
        stop(doomed)
        assert doomed.stdout is not None
        doomed.stdout.close()

    receiver = connect(broker.url).create_receiver("orders", name="survivor")
    # Each once; the five that come back may come after the others.
    assert sorted(receive_all(receiver, 10)) == list(range(10))
    assert_nothing_more(receiver)


# -- garbage ----------------------------------------------------------------------------

NOISE = random.Random(1).randbytes(4096)
assert not NOISE.startswith(b"AMQP")


def test_random_bytes_instead_of_a_header_get_a_protocol_header_then_end_of_stream(
    shared_broker: RunningBroker, bystander: Bystander
) -> None:
    client = RawClient(shared_broker.port)
    client.send(NOISE)
    client.read_until_end()
    # What AMQP allows when the header is wrong (2.2): the one the server speaks, then
    # the socket closed. No frame can carry a condition before the headers agree.
    assert [record.header for record in client.decoder.records] in ([AMQP_HEADER], [SASL_HEADER])
    bystander.round_trip()
    assert_served(shared_broker)


GARBAGE = {
    # The noise's first four bytes, read as a frame size, are far over max-frame-size.
    "header then random bytes": (AMQP_HEADER + NOISE, "amqp:connection:framing-error"),
    "open then random bytes": (frames(OPEN, header=True) + NOISE, "amqp:connection:framing-error"),
    "open then a frame of junk": (
        frames(OPEN, header=True) + struct.pack(">IBBH", 32, 2, FRAME_AMQP, 0) + b"\xff" * 24,
        "amqp:decode-error",
    ),
    "open then a frame of 2 GB": (
        frames(OPEN, header=True) + struct.pack(">IBBH", 2**31, 2, FRAME_AMQP, 0) + bytes(64),
        "amqp:connection:framing-error",
    ),
    "an attached receiver then junk": (
        frames(
            OPEN,
            BEGIN,
            spec.Attach(name="r", handle=0, role=True, source=spec.Source(address="bystander")),
            header=True,
        )
        + struct.pack(">IBBH", 16, 2, FRAME_AMQP, 0)
        + b"\x00\x53\xee\x45junk",
        "amqp:decode-error",
    ),
}


@pytest.mark.parametrize(("data", "condition"), GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_closes_that_connection_with_an_amqp_error_and_no_other(
    shared_broker: RunningBroker, bystander: Bystander, data: bytes, condition: str
) -> None:
    client = RawClient(shared_broker.port)
    client.send(data)
    client.read_until_end()
    assert [record.header for record in client.decoder.records if record.header] == [AMQP_HEADER]
    assert client.performatives(spec.Open), "the broker closed without an open before its close"
    assert client.close_condition() == condition
    bystander.round_trip()
    assert_served(shared_broker)


# -- floods -----------------------------------------------------------------------------

DEPTH = 20


class Producer(threading.Thread):
    """Sends numbered messages on a connection of its own with Proton's blocking send
    (each waits for its outcome, however long the broker holds back credit), and counts
    the ones accepted."""

    def __init__(self, url: str, address: str, count: int, timeout: float = 3 * PROMPTLY):
        super().__init__(name=f"producer-{address}", daemon=True)
        self.url, self.address, self.count, self.timeout = url, address, count, timeout
        self.accepted = 0
        self.error: BaseException | None = None
        self._changed = threading.Condition()

    def run(self) -> None:
        try:
            connection = proton.utils.BlockingConnection(self.url, timeout=self.timeout)
            try:
                sender = connection.create_sender(self.address, name="flood")
                for number in range(self.count):
                    sender.send(proton.Message(body=number))  # raises unless accepted
                    with self._changed:
                        self.accepted += 1
                        self._changed.notify_all()
            finally:
                connection.close()
        except BaseException as error:
            self.error = error

    def wait_accepted(self, count: int, timeout: float) -> bool:
        """Whether `count` messages were accepted within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self.accepted >= count, timeout)


def test_a_flood_beyond_the_depth_limit_waits_for_room_and_loses_nothing(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker("--max-queue-depth", str(DEPTH))
    flood = 20 * DEPTH
    producer = Producer(broker.url, "flooded", flood)
    producer.start()
    try:
        assert producer.wait_accepted(DEPTH, PROMPTLY), f"{producer.accepted} accepted"

        # Another queue flows while this one is full.
        other = connect(broker.url)
        sender = other.create_sender("elsewhere", name="other-producer")
        receiver = other.create_receiver("elsewhere", name="other-consumer")
        for number in range(50):
            sender.send(proton.Message(body=number))
            assert receiver.receive(timeout=PROMPTLY).body == number
            receiver.accept()

        # The flooding producer is held back (no credit), not answered with a drop.
        assert not producer.wait_accepted(DEPTH + 1, QUIETLY)
        assert producer.error is None
        assert producer.accepted == DEPTH

        consumer = connect(broker.url).create_receiver("flooded", name="consumer", credit=10)
        consumed: list[Any] = []
        for _ in range(flood):
            if consumer.link.credit < 5:
                consumer.link.flow(10 - consumer.link.credit)
            message = consumer.receive(timeout=PROMPTLY)
            # The broker held at most DEPTH messages at any time. Accepted by the
            # broker but not yet known to the producer, or accepted here but not yet
            # processed by the broker, only make this smaller than the true depth.
            held = producer.accepted - len(consumed)
            assert held <= DEPTH, f"{held} messages held by a queue of depth {DEPTH}"
            consumer.accept()
            consumed.append(message.body)
        assert consumed == list(range(flood))
        assert_nothing_more(consumer)
    finally:
        producer.join(PROMPTLY)
    assert producer.error is None
    assert producer.accepted == flood


def test_a_producer_that_ignores_credit_is_cut_off_within_the_limit(
    start_broker: Callable[..., RunningBroker], connect: Callable[[str], Any]
) -> None:
    broker = start_broker("--max-queue-depth", "5")
    bystander = Bystander(broker.url)
    try:
        client = RawClient(broker.port)
        assert client.open_sender("bounded") == 5  # no more than the queue has room for
        messages = [(transfer(n), proton.Message(body=n).encode()) for n in range(50)]
        client.send(frames(*messages))
        client.read_until_end()
        assert client.close_condition() == "amqp:link:transfer-limit-exceeded"
        bystander.round_trip()
    finally:
        bystander.close()
    receiver = connect(broker.url).create_receiver("bounded", name="consumer")
    assert receive_all(receiver, 5) == [0, 1, 2, 3, 4]
    assert_nothing_more(receiver)


# -- memory -----------------------------------------------------------------------------

MESSAGE_SIZE = 10_000
FLOOD_MESSAGES = 1000
VANISHING_CONSUMERS = 200
HOARD_CREDIT = 10
#: How much the broker's RSS may grow over a phase. What the broker may legitimately
#: hold is its depth limit (50 x 10 kB = 0.5 MB) plus allocator slack: well under 1 MB
#: in practice. Each phase moves far more than the bound through the broker: the flood
#: 1000 x 10 kB = 10 MB (were those messages kept, the bytes they arrived as alone
#: would add 10 MB, and a decoded copy of each body as much again), the vanishing
#: consumers 200 x 10 unsettled messages x 10 kB = 20 MB (their connections, buffers
#: and deliveries, if kept, hold at least that).
RSS_GROWTH_BOUND = 6 * 1024 * 1024


def pump(url: str, address: str, count: int) -> None:
    """Send `count` 10 kB messages as fast as the broker's credit allows, then wait
    until every one was accepted."""
    connection = proton.utils.BlockingConnection(url, timeout=PROMPTLY)
    try:
        sender = connection.create_sender(address, name=f"pump-{threading.get_ident()}")
        deliveries = []
        body = b"x" * MESSAGE_SIZE
        for _ in range(count):
            if not sender.link.credit:
                connection.wait(lambda: sender.link.credit > 0)
            deliveries.append(sender.link.send(proton.Message(body=body)))
        connection.wait(lambda: all(delivery.remote_state for delivery in deliveries))
        assert {delivery.remote_state for delivery in deliveries} == {proton.Delivery.ACCEPTED}
    finally:
        connection.close()


def flood_through(broker: RunningBroker, count: int) -> None:
    """Two producers flood a depth-limited queue; a consumer drains all of it."""
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            pump(broker.url, "heavy", count // 2)
        except BaseException as error:
            errors.append(error)

    producers = [threading.Thread(target=produce, daemon=True) for _ in range(2)]
    for producer in producers:
        producer.start()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    try:
        receiver = connection.create_receiver("heavy", name="drain")
        assert len(receive_all(receiver, count)) == count
    finally:
        connection.close()
        for producer in producers:
            producer.join(PROMPTLY)
    assert not errors


def vanish_with_hoards(broker: RunningBroker, count: int) -> None:
    """`count` consumers each take HOARD_CREDIT 10 kB messages and vanish."""
    for cycle in range(count):
        taken = vanish_once(broker, VANISHING_KINDS[2 + cycle % 2], "hoard", HOARD_CREDIT)
        assert len(taken) == HOARD_CREDIT


def test_memory_stays_bounded_through_floods_and_vanishing_consumers(
    start_broker: Callable[..., RunningBroker],
) -> None:
    broker = start_broker("--max-queue-depth", "50")
    pump(broker.url, "hoard", 50)  # a full queue, for the vanishing consumers to take from
    # Every path once on a small scale first: what the first use allocates for good
    # (imports, caches, pools) belongs to the baseline.
    flood_through(broker, 200)
    vanish_with_hoards(broker, 20)
    baseline = broker.rss()

    flood_through(broker, FLOOD_MESSAGES)
    after_flood = broker.rss()
    vanish_with_hoards(broker, VANISHING_CONSUMERS)
    after_vanishing = broker.rss()

    megabytes = [round(size / 2**20, 1) for size in (baseline, after_flood, after_vanishing)]
    assert after_flood - baseline < RSS_GROWTH_BOUND, f"RSS (MB): {megabytes}"
    assert after_vanishing - baseline < RSS_GROWTH_BOUND, f"RSS (MB): {megabytes}"
    assert_served(broker)
