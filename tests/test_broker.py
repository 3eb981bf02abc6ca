"""The embedded broker (`python -m amqp_core.broker`), driven by real clients: Proton's
blocking utilities and amqp_core's.

Each test starts its own broker on a free port, as a subprocess stopped by its PID, or
in a thread of this process where the test reads `Broker.stats()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proton
import proton.reactor
import proton.utils
import pytest
from processes import free_port, stop, wait_for_port

import amqp_core
import amqp_core.handlers
import amqp_core.reactor
import amqp_core.utils

REPO = Path(__file__).resolve().parent.parent

#: How long a test waits for something that should happen at once.
PROMPTLY = 5
#: How long a test watches for something that must not happen.
QUIETLY = 0.5


@pytest.fixture
def start_broker() -> Iterator[Callable[..., str]]:
    """Start `python -m amqp_core.broker` with extra options; return its host:port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> str:
        port = free_port()
        command = [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"]
        started.append(subprocess.Popen([*command, *options], cwd=REPO))
        wait_for_port(port)
        return f"127.0.0.1:{port}"

    yield start
    for process in started:
        stop(process)


@dataclass(frozen=True)
class Client:
    """The names a test needs from one client library: Proton's or amqp_core's."""

    BlockingConnection: Any
    Message: Any
    Timeout: Any
    Delivery: Any
    LinkDetached: Any
    Selector: Any
    SendException: Any
    ConnectionException: Any


CLIENTS = {
    "proton": Client(
        proton.utils.BlockingConnection,
        proton.Message,
        proton.Timeout,
        proton.Delivery,
        proton.utils.LinkDetached,
        proton.reactor.Selector,
        proton.utils.SendException,
        proton.ConnectionException,
    ),
    "amqp_core": Client(
        amqp_core.utils.BlockingConnection,
        amqp_core.Message,
        amqp_core.Timeout,
        amqp_core.Delivery,
        amqp_core.utils.LinkDetached,
        amqp_core.reactor.Selector,
        amqp_core.utils.SendException,
        amqp_core.ConnectionException,
    ),
}


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    """Each test that uses a client runs with Proton's and with amqp_core's."""
    return CLIENTS[request.param]


@pytest.fixture
def connect(client: Client) -> Iterator[Callable[[str], Any]]:
    """Open blocking connections of the test's client library; closed after the test."""
    connections: list[Any] = []

    def open_connection(url: str) -> Any:
        connection = client.BlockingConnection(url, timeout=PROMPTLY)
        connections.append(connection)
        return connection

    yield open_connection
    for connection in connections:
        connection.close()


def eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + PROMPTLY
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def flush(connection: Any) -> None:
    """Let a Proton BlockingConnection send what it has (it does only while waiting)."""
    with contextlib.suppress(proton.Timeout, amqp_core.Timeout):
        connection.wait(lambda: False, timeout=0.1)


def settle_modified(receiver: Any, *, failed: bool, undeliverable: bool) -> None:
    """Settle the message `receiver` took last as modified, with these flags."""
    delivery = receiver.fetcher.unsettled.popleft()
    delivery.local.failed = failed
    delivery.local.undeliverable = undeliverable
    delivery.update(type(delivery).MODIFIED)
    delivery.settle()


# -- the command ------------------------------------------------------------------------


def test_help_documents_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amqp_core.broker", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in (
        "--address",
        "--data-dir",
        "--max-memory",
        "--topic-prefix",
        "--dead-letter-address",
        "--max-queue-depth",
        "--max-queue-bytes",
        "--max-connections",
        "--max-links-per-connection",
        "--max-message-size",
        "--producer-credit",
        "AMQP_TRACE",
    ):
        assert option in result.stdout


def test_amqp_trace_prints_every_frame(client: Client) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AMQP_TRACE": "1"},
    )
    try:
        wait_for_port(port)
        connection = client.BlockingConnection(f"127.0.0.1:{port}", timeout=PROMPTLY)
        connection.create_sender("traced", name="tracer").send(client.Message(body="seen"))
        connection.close()
    finally:
        stop(process)
    assert process.stderr is not None
    trace = process.stderr.read()
    for frame in ("<- Open(", "-> Open(", "<- Attach(", "<- Transfer(", "-> Disposition("):
        assert frame in trace


def test_sigterm_stops_the_broker_cleanly(client: Client) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)
        connection = client.BlockingConnection(f"127.0.0.1:{port}", timeout=PROMPTLY)
        connection.create_receiver("q", name="stays")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=PROMPTLY) == 0
        assert process.stderr is not None
        assert b"Traceback" not in process.stderr.read()
    finally:
        stop(process)


# -- addressing -------------------------------------------------------------------------


def test_topic_gives_every_subscriber_a_copy(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    first = connection.create_receiver("topic/news", name="first", credit=10)
    second = connection.create_receiver("topic/news", name="second", credit=10)
    sender = connection.create_sender("topic/news", name="publisher")
    for number in range(3):
        sender.send(client.Message(body=f"news {number}"))
    for receiver in (first, second):
        bodies = [receiver.receive(timeout=PROMPTLY).body for _ in range(3)]
        receiver.accept()
        assert bodies == ["news 0", "news 1", "news 2"]


def test_topic_keeps_nothing_without_subscribers(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    connection.create_sender("topic/void", name="publisher").send(client.Message(body="unheard"))
    late = connection.create_receiver("topic/void", name="late")
    with pytest.raises(client.Timeout):
        late.receive(timeout=QUIETLY)


def test_topic_prefix_is_configurable(client: Client, start_broker: Any, connect: Any) -> None:
    url = start_broker("--topic-prefix", "events.")
    connection = connect(url)
    receivers = [connection.create_receiver("events.a", name=f"r{n}") for n in range(2)]
    connection.create_sender("events.a", name="publisher").send(client.Message(body="both"))
    assert [receiver.receive(timeout=PROMPTLY).body for receiver in receivers] == ["both"] * 2


def test_dynamic_address_is_deleted_on_detach(in_process_broker: Any, connect: Any) -> None:
    broker, url = in_process_broker
    connection = connect(url)
    receiver = connection.create_receiver(None, dynamic=True, name="replies")
    address = receiver.link.remote_source.address
    assert address
    assert address in broker.stats()
    receiver.close()
    assert eventually(lambda: address not in broker.stats())


def test_competing_consumers_share_a_queue_fairly(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    consumers = connect(url)
    receivers = [consumers.create_receiver("shared", name=f"r{n}", credit=10) for n in range(2)]
    sender = connect(url).create_sender("shared", name="producer")
    for number in range(10):
        sender.send(client.Message(body=number))
    for receiver in receivers:
        bodies = [receiver.receive(timeout=PROMPTLY).body for _ in range(5)]
        receiver.accept()
        assert len(set(bodies)) == 5
        with pytest.raises(client.Timeout):
            receiver.receive(timeout=QUIETLY)


# -- outcomes ---------------------------------------------------------------------------


def test_rejected_message_moves_to_dead_letter_address(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connect(url).create_sender("orders", name="producer").send(client.Message(body="poison"))
    connection = connect(url)
    receiver = connection.create_receiver("orders", name="consumer")
    assert receiver.receive(timeout=PROMPTLY).body == "poison"
    receiver.reject()
    dead_letters = connection.create_receiver("DLQ", name="dead-letters")
    assert dead_letters.receive(timeout=PROMPTLY).body == "poison"
    dead_letters.accept()
    with pytest.raises(client.Timeout):
        receiver.receive(timeout=QUIETLY)


def test_dead_letter_address_is_configurable(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--dead-letter-address", "graveyard")
    connection = connect(url)
    connection.create_sender("orders", name="producer").send(client.Message(body="poison"))
    receiver = connection.create_receiver("orders", name="consumer")
    receiver.receive(timeout=PROMPTLY)
    receiver.reject()
    dead_letters = connection.create_receiver("graveyard", name="dead-letters")
    assert dead_letters.receive(timeout=PROMPTLY).body == "poison"


def test_modified_delivery_failed_counts_and_redelivers(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    connection.create_sender("work", name="producer").send(client.Message(body="retry me"))
    receiver = connection.create_receiver("work", name="consumer")
    counts = []
    for _ in range(3):
        message = receiver.receive(timeout=PROMPTLY)
        counts.append(message.delivery_count)
        settle_modified(receiver, failed=True, undeliverable=False)
    assert counts == [0, 1, 2]


def test_released_message_keeps_its_place(client: Client, start_broker: Any, connect: Any) -> None:
    url = start_broker()
    connection = connect(url)
    sender = connection.create_sender("line", name="producer")
    for body in ("first", "second", "third"):
        sender.send(client.Message(body=body))
    receiver = connection.create_receiver("line", name="consumer")
    assert receiver.receive(timeout=PROMPTLY).body == "first"
    receiver.release(delivered=False)
    # Whatever else this receiver's credit took goes back to its place too on detach.
    receiver.close()
    after = connection.create_receiver("line", name="after", credit=10)
    messages = [after.receive(timeout=PROMPTLY) for _ in range(3)]
    assert [(m.body, m.delivery_count) for m in messages] == [
        ("first", 0),
        ("second", 0),
        ("third", 0),
    ]


def test_undeliverable_here_is_never_offered_to_that_link_again(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    connection.create_sender("jobs", name="producer").send(client.Message(body="not for me"))
    picky = connection.create_receiver("jobs", name="picky")
    assert picky.receive(timeout=PROMPTLY).body == "not for me"
    settle_modified(picky, failed=True, undeliverable=True)
    with pytest.raises(client.Timeout):
        picky.receive(timeout=QUIETLY)
    other = connect(url).create_receiver("jobs", name="other")
    message = other.receive(timeout=PROMPTLY)
    assert (message.body, message.delivery_count) == ("not for me", 1)


# -- limits -----------------------------------------------------------------------------


def test_full_queue_holds_producers_credit_back(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-queue-depth", "3")
    producer = connect(url)
    sender = producer.create_sender("bounded", name="producer")
    for number in range(3):
        sender.send(client.Message(body=number))
    with pytest.raises(client.Timeout):
        producer.wait(lambda: sender.link.credit > 0, timeout=QUIETLY)
    assert sender.link.credit == 0

    consumer = connect(url)
    receiver = consumer.create_receiver("bounded", name="consumer")
    assert receiver.receive(timeout=PROMPTLY).body == 0
    receiver.accept()
    flush(consumer)
    producer.wait(lambda: sender.link.credit > 0, timeout=PROMPTLY)
    sender.send(client.Message(body=3))
    assert [receiver.receive(timeout=PROMPTLY).body for _ in range(3)] == [1, 2, 3]


def test_expired_messages_make_room_for_the_producers_held_back(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-queue-depth", "2")
    producer = connect(url)
    sender = producer.create_sender("perishing", name="producer")
    for number in range(2):
        sender.send(client.Message(body=number, ttl=0.5))
    assert sender.link.credit == 0
    # Nobody consumes: the expiry sweep alone frees the room.
    producer.wait(lambda: sender.link.credit > 0, timeout=PROMPTLY)
    sender.send(client.Message(body="after expiry"))
    receiver = connect(url).create_receiver("perishing", name="consumer")
    assert receiver.receive(timeout=PROMPTLY).body == "after expiry"


def test_full_queue_by_bytes_holds_producers_credit_back(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-queue-bytes", "2000", "--producer-credit", "10")
    producer = connect(url)
    sender = producer.create_sender("heavy", name="producer")
    sent = 0
    while sender.link.credit > 0 and sent < 100:
        sender.send(client.Message(body=b"x" * 1000))
        sent += 1
    # The window of 10 granted at the attach is honoured, plus one granted while the
    # queue still had room.
    assert sent == 11
    with pytest.raises(client.Timeout):
        producer.wait(lambda: sender.link.credit > 0, timeout=QUIETLY)

    consumer = connect(url)
    receiver = consumer.create_receiver("heavy", name="consumer", credit=10)
    for _ in range(10):
        receiver.receive(timeout=PROMPTLY)
        receiver.accept()
    flush(consumer)
    producer.wait(lambda: sender.link.credit > 0, timeout=PROMPTLY)


def test_anonymous_relay_to_a_full_queue_is_released(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-queue-depth", "1")
    relay = connect(url).create_sender(None, name="relay")
    relay.send(client.Message(address="small", body="fits"))
    with pytest.raises(client.SendException) as refused:
        relay.send(client.Message(address="small", body="does not fit"))
    assert refused.value.state == client.Delivery.RELEASED
    relay.send(client.Message(address="other", body="elsewhere is fine"))
    receiver = connect(url).create_receiver("small", name="consumer", credit=10)
    assert receiver.receive(timeout=PROMPTLY).body == "fits"
    with pytest.raises(client.Timeout):
        receiver.receive(timeout=QUIETLY)


def test_connections_beyond_the_limit_are_closed_with_resource_limit_exceeded(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-connections", "2")
    first = connect(url)
    connect(url)
    with pytest.raises(client.ConnectionException, match="resource-limit-exceeded"):
        client.BlockingConnection(url, timeout=PROMPTLY).create_sender("q", name="third")
    first.close()
    connect(url).create_sender("q", name="after a close").send(client.Message(body="ok"))


def test_links_beyond_the_limit_are_detached_with_resource_limit_exceeded(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-links-per-connection", "2")
    connection = connect(url)
    first = connection.create_sender("q", name="one")
    connection.create_receiver("q", name="two")
    with pytest.raises(client.LinkDetached, match="resource-limit-exceeded"):
        connection.create_sender("q", name="three")
    first.close()
    connection.create_sender("q", name="after a detach").send(client.Message(body="ok"))


def test_a_message_over_the_size_limit_closes_its_connection_only(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker("--max-message-size", "1000")
    bystander = connect(url).create_sender("q", name="bystander")
    sender = connect(url).create_sender("q", name="producer")
    assert sender.link.remote_max_message_size == 1000
    with pytest.raises(client.ConnectionException, match="message-size-exceeded"):
        sender.send(client.Message(body=b"x" * 2000))
    bystander.send(client.Message(body=b"x" * 500))
    receiver = connect(url).create_receiver("q", name="consumer")
    assert receiver.receive(timeout=PROMPTLY).body == b"x" * 500


# -- expiry and priority ------------------------------------------------------------------


def test_expired_messages_are_never_delivered(
    client: Client, in_process_broker: Any, connect: Any
) -> None:
    broker, url = in_process_broker
    sender = connect(url).create_sender("perishable", name="producer")
    sender.send(client.Message(body="short-lived", ttl=0.2))
    sender.send(client.Message(body="already expired", expiry_time=time.time() - 60))
    sender.send(client.Message(body="long-lived", ttl=60))
    sender.send(client.Message(body="no expiry"))
    time.sleep(0.4)
    receiver = connect(url).create_receiver("perishable", name="consumer", credit=10)
    assert [receiver.receive(timeout=PROMPTLY).body for _ in range(2)] == [
        "long-lived",
        "no expiry",
    ]
    with pytest.raises(client.Timeout):
        receiver.receive(timeout=QUIETLY)
    assert broker.stats()["perishable"].expired == 2


def test_expired_messages_are_swept_from_a_queue_nobody_reads(
    client: Client, in_process_broker: Any, connect: Any
) -> None:
    broker, url = in_process_broker
    sender = connect(url).create_sender("unread", name="producer")
    for number in range(5):
        sender.send(client.Message(body=number, ttl=0.1))
    assert eventually(lambda: broker.stats()["unread"].depth == 0)
    stats = broker.stats()["unread"]
    assert (stats.expired, stats.depth_bytes) == (5, 0)


def test_higher_priority_messages_are_delivered_first(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    sender = connect(url).create_sender("ranked", name="producer")
    for body, priority in [("low", 1), ("high 1", 9), ("normal", 4), ("high 2", 9), ("low 2", 1)]:
        sender.send(client.Message(body=body, priority=priority))
    receiver = connect(url).create_receiver("ranked", name="consumer", credit=10)
    bodies = [receiver.receive(timeout=PROMPTLY).body for _ in range(5)]
    assert bodies == ["high 1", "high 2", "normal", "low", "low 2"]


# -- observability ----------------------------------------------------------------------


def test_stats_per_address(client: Client, in_process_broker: Any, connect: Any) -> None:
    broker, url = in_process_broker
    connection = connect(url)
    sender = connection.create_sender("counted", name="producer")
    for number in range(3):
        sender.send(client.Message(body=number))
    receiver = connection.create_receiver("counted", name="consumer")
    receiver.receive(timeout=PROMPTLY)
    receiver.accept()
    connection.wait(lambda: broker.stats()["counted"].dequeued == 1, timeout=PROMPTLY)
    stats = broker.stats()["counted"]
    assert (stats.enqueued, stats.consumers, stats.producers) == (3, 1, 1)
    # One waiting and one sent to the consumer's credit window, both still owned.
    assert stats.depth == 2


# -- selectors --------------------------------------------------------------------------


def test_selector_that_does_not_parse_detaches_with_invalid_field(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    with pytest.raises(client.LinkDetached) as detached:
        connection.create_receiver("q", name="bad", options=client.Selector("colour = "))
    condition = detached.value.link.remote_condition
    assert condition.name == "amqp:invalid-field"
    assert "position 9" in condition.description


def test_a_selector_gets_a_message_released_behind_where_it_looked(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    sender = connection.create_sender("sorted", name="producer")
    sender.send(client.Message(body="red", properties={"colour": "red"}))
    sender.send(client.Message(body="blue", properties={"colour": "blue"}))
    anyone = connection.create_receiver("sorted", name="anyone")  # one credit: takes "red"
    assert anyone.receive(timeout=PROMPTLY).body == "red"
    reds = connect(url).create_receiver(
        "sorted", name="reds", credit=10, options=client.Selector("colour = 'red'")
    )
    with pytest.raises(client.Timeout):
        reds.receive(timeout=QUIETLY)  # it looked at "blue", which is not for it
    anyone.release(delivered=False)
    flush(connection)
    assert reds.receive(timeout=PROMPTLY).body == "red"


def test_a_selector_gets_a_higher_priority_message_that_arrives_behind_where_it_looked(
    client: Client, start_broker: Any, connect: Any
) -> None:
    url = start_broker()
    connection = connect(url)
    sender = connection.create_sender("ranked", name="producer")
    for number in range(3):
        sender.send(client.Message(body=f"blue {number}", properties={"colour": "blue"}))
    reds = connection.create_receiver(
        "ranked", name="reds", credit=10, options=client.Selector("colour = 'red'")
    )
    with pytest.raises(client.Timeout):
        reds.receive(timeout=QUIETLY)
    sender.send(client.Message(body="red, urgent", priority=9, properties={"colour": "red"}))
    sender.send(client.Message(body="red", properties={"colour": "red"}))
    assert [reds.receive(timeout=PROMPTLY).body for _ in range(2)] == ["red, urgent", "red"]


# -- durability -------------------------------------------------------------------------


def test_durable_messages_survive_kill_9(tmp_path: Path, client: Client, connect: Any) -> None:
    """Accepted durable messages come back after kill -9; consumed and non-durable
    ones do not."""
    port = free_port()
    command = [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"]
    command += ["--data-dir", str(tmp_path)]
    url = f"127.0.0.1:{port}"
    broker = subprocess.Popen(command, cwd=REPO)
    try:
        wait_for_port(port)
        producer = client.BlockingConnection(url, timeout=PROMPTLY)
        sender = producer.create_sender("ledger", name="producer")
        for number in range(4):
            sender.send(client.Message(body=f"durable {number}", durable=True))
        sender.send(client.Message(body="fleeting"))
        producer.close()
        consumer = client.BlockingConnection(url, timeout=PROMPTLY)
        receiver = consumer.create_receiver("ledger", name="consumer")
        assert receiver.receive(timeout=PROMPTLY).body == "durable 0"
        receiver.accept()
        consumer.close()  # the broker answers the close after the accept
        broker.kill()
        broker.wait(timeout=PROMPTLY)

        broker = subprocess.Popen(command, cwd=REPO)
        wait_for_port(port)
        receiver = connect(url).create_receiver("ledger", name="after", credit=10)
        bodies = [receiver.receive(timeout=PROMPTLY).body for _ in range(3)]
        receiver.accept()
        assert bodies == ["durable 1", "durable 2", "durable 3"]
        with pytest.raises(client.Timeout):
            receiver.receive(timeout=QUIETLY)
    finally:
        stop(broker)


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{free_port()}"]
        + ["--data-dir", str(not_a_folder / "store")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 4  # the data directory: amqp-broker --help
    assert "Traceback" not in result.stderr
    assert "data directory" in result.stderr


def test_the_broker_routes_by_the_sections_before_the_body_and_leaves_the_body_unread(
    in_process_broker: Any,
) -> None:
    """A body is forwarded as it came, not decoded (a 50 MB one took the event loop for
    25-30 ms): even one that is not valid AMQP is taken, and left to its consumer."""
    broker, url = in_process_broker
    head = amqp_core.Message(subject="unread").encode()
    outcomes: list[str] = []

    class RawSender(amqp_core.handlers.MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.create_sender(f"{url}/unread-body")

        def on_sendable(self, event: Any) -> None:
            sender = event.sender
            if sender.delivery_count == 0:
                sender.delivery(sender.delivery_tag())
                sender.stream(head + b"\x00Su\xb0\xff\xff\xff\xff")  # a data section cut off
                sender.advance()

        def on_accepted(self, event: Any) -> None:
            outcomes.append("accepted")
            event.connection.close()

        def on_rejected(self, event: Any) -> None:
            outcomes.append(f"rejected: {event.delivery.remote.condition}")
            event.connection.close()

    amqp_core.reactor.Container(RawSender()).run()
    assert outcomes == ["accepted"]
    assert broker.stats()["unread-body"].depth == 1
