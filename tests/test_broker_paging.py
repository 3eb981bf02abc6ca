"""The broker's memory bound (`--max-memory`): messages beyond it stay on disk only and are
read back as consumers catch up, and a restart listens at once and reads its stored
messages back the same way.

What a user relies on, with paging under way: a queue keeps arrival order and exact
counts (depth, bytes, producers' credit); priorities order what is in memory; selectors
and browsers see what is read back; non-durable messages on disk never come back after
a restart; a message that expired on disk is never delivered. Real clients (Qpid
Proton) talk to a broker in this process (`InProcessBroker`, whose stats the test reads)
or in a subprocess (RSS, kill -9, restarts).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import proton
import proton.reactor
import proton.utils
import pytest
from gateway_fixtures import GatewayServer, receive_all, send
from in_process_broker import InProcessBroker
from processes import free_port, stop, wait_for_port

from amqp_core import Delivery, Message
from amqp_core.broker.queues import MESSAGE_OVERHEAD, PAGE_IN_BELOW
from amqp_core.broker.server import Broker, BrokerConfig
from amqp_core.broker.store import STORE_FILE_NAME, MessageStore

REPO = Path(__file__).resolve().parent.parent

#: How long a test waits for something that should happen at once (generous: the
#: machine is shared and loaded).
PROMPTLY = 10.0
#: How long a test watches for something that must not happen.
QUIETLY = 0.5

#: A bound that holds about a hundred of the tests' small messages.
SMALL_BOUND = 100 * (MESSAGE_OVERHEAD + 30)


def eventually(condition: Callable[[], bool], timeout: float = PROMPTLY) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def paging_broker(tmp_path: Path) -> Iterator[Callable[..., tuple[InProcessBroker, str]]]:
    """Start brokers in this process with a data directory and a memory bound (by
    default `SMALL_BOUND`); stopped after the test."""
    started: list[InProcessBroker] = []

    def start(**config: Any) -> tuple[InProcessBroker, str]:
        port = free_port()
        config.setdefault("max_memory", SMALL_BOUND)
        broker = InProcessBroker(
            BrokerConfig(address=f"127.0.0.1:{port}", data_dir=tmp_path / "data", **config)
        )
        started.append(broker)
        wait_for_port(port)
        return broker, f"127.0.0.1:{port}"

    yield start
    for broker in started:
        broker.stop()


def publish(broker: InProcessBroker, address: str, messages: list[Message]) -> None:
    """Publish `messages` to `address` in the broker's loop, and wait until each is
    accepted (after its store write, for those that are stored)."""
    outcomes: list[int] = []
    done = threading.Event()

    def settle(state: int, condition: Any) -> None:
        outcomes.append(state)
        if len(outcomes) == len(messages):
            done.set()

    def publish_all() -> None:
        for message in messages:
            broker.broker.publish(address, message, settle)

    broker.call(publish_all)
    assert done.wait(PROMPTLY), f"{len(outcomes)} of {len(messages)} settled"
    assert set(outcomes) == {Delivery.ACCEPTED}


def numbered(count: int, start: int = 0, **fields: Any) -> list[Message]:
    """Messages whose bodies are start, start + 1, ...; durable and not, by turns."""
    return [
        Message(body=number, durable=number % 2 == 0, **fields)
        for number in range(start, start + count)
    ]


def receive(receiver: Any, count: int) -> list[Any]:
    """The bodies of the next `count` messages, each accepted (the acceptances are sent
    before this returns)."""
    bodies = []
    for _ in range(count):
        bodies.append(receiver.receive(timeout=PROMPTLY).body)
        receiver.accept()
    with contextlib.suppress(proton.Timeout):
        receiver.connection.wait(lambda: False, timeout=0.1)
    return bodies


def test_a_memory_bound_without_a_store_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a data_dir"):
        Broker(BrokerConfig(max_memory=SMALL_BOUND))


# -- order and counts ---------------------------------------------------------------------


def test_a_queue_beyond_the_bound_keeps_its_order_and_exact_counts(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker()
    messages = numbered(2_000)
    publish(broker, "ledger", messages)

    stats = broker.stats()["ledger"]
    assert stats.depth == 2_000
    assert stats.depth_bytes == sum(len(message.encode()) for message in messages)
    assert stats.paged > 1_800  # the bound holds about a hundred
    assert broker.call(lambda: broker.broker.pager.used) <= SMALL_BOUND + 200

    receiver = connect(url).create_receiver("ledger", name="consumer", credit=300)
    assert receive(receiver, 2_000) == list(range(2_000))
    assert eventually(lambda: broker.stats()["ledger"].dequeued == 2_000)
    stats = broker.stats()["ledger"]
    assert (stats.depth, stats.depth_bytes, stats.paged) == (0, 0, 0)
    assert broker.call(lambda: broker.broker.pager.used) == 0
    # Nothing is left in memory or on disk: a message now goes straight through.
    publish(broker, "ledger", [Message(body="after")])
    assert receive(receiver, 1) == ["after"]


def test_messages_arriving_while_a_queue_has_some_on_disk_go_behind_them(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker()
    publish(broker, "ledger", numbered(3_000))
    receiver = connect(url).create_receiver("ledger", name="consumer", credit=50)
    first = receive(receiver, 250)
    # The queue still has messages on disk: these wait behind them (on disk too),
    # whatever their kind.
    assert broker.stats()["ledger"].paged > 0
    publish(broker, "ledger", numbered(100, start=3_000))
    assert first + receive(receiver, 2_850) == list(range(3_100))


def test_the_messages_on_disk_count_against_the_queue_depth_limit(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker(max_queue_depth=300)
    producer = connect(url)
    sender = producer.create_sender("bounded", name="producer")
    sent = 0
    while sender.link.credit > 0:
        sender.send(proton.Message(body=sent, durable=True))
        sent += 1
    assert sent == 300
    with pytest.raises(proton.Timeout):
        producer.wait(lambda: sender.link.credit > 0, timeout=QUIETLY)
    stats = broker.stats()["bounded"]
    assert (stats.depth, stats.producers) == (300, 1)
    assert stats.paged > 150

    receiver = connect(url).create_receiver("bounded", name="consumer", credit=10)
    assert receive(receiver, 10) == list(range(10))
    producer.wait(lambda: sender.link.credit > 0, timeout=PROMPTLY)
    sender.send(proton.Message(body=sent, durable=True))
    receiver.flow(300)
    assert receive(receiver, 291) == list(range(10, 301))


def test_a_message_a_consumer_waits_for_is_not_paged_out(paging_broker: Any, connect: Any) -> None:
    broker, url = paging_broker()
    publish(broker, "backlog", numbered(500))  # memory is over the bound
    receiver = connect(url).create_receiver("waiting", name="consumer", credit=1)
    assert eventually(lambda: broker.stats()["waiting"].consumers == 1)
    publish(broker, "waiting", [Message(body="straight through")])
    assert broker.stats()["waiting"].paged == 0
    assert receive(receiver, 1) == ["straight through"]


# -- priorities, selectors, browsers -------------------------------------------------------


def test_priorities_order_what_is_in_memory_and_disk_keeps_arrival_order(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker()
    publish(broker, "ranked", numbered(600))
    in_memory = 600 - broker.stats()["ranked"].paged
    # Arrives behind the messages on disk, and is read back after them.
    publish(broker, "ranked", [Message(body="urgent", priority=9)])
    receiver = connect(url).create_receiver("ranked", name="consumer", credit=100)
    bodies = receive(receiver, 601)
    assert bodies.index("urgent") >= in_memory
    assert [body for body in bodies if body != "urgent"] == list(range(600))

    # Once all is in memory again, priorities order the queue as usual.
    receiver.close()
    publish(broker, "ranked", [Message(body="low", priority=1), Message(body="high", priority=9)])
    receiver = connect(url).create_receiver("ranked", name="again", credit=10)
    assert receive(receiver, 2) == ["high", "low"]


def test_a_selector_gets_the_messages_it_selects_as_they_are_read_back(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker()
    # Fewer blue ones than PAGE_IN_BELOW: all can wait in memory while the reds go.
    count = 2 * (PAGE_IN_BELOW - 50)
    messages = [
        Message(body=number, durable=True, properties={"colour": ("red", "blue")[number % 2]})
        for number in range(count)
    ]
    publish(broker, "sorted", messages)
    assert broker.stats()["sorted"].paged > count - 150
    connection = connect(url)
    reds = connection.create_receiver(
        "sorted", name="reds", credit=count, options=proton.reactor.Selector("colour = 'red'")
    )
    assert receive(reds, count // 2) == list(range(0, count, 2))
    anyone = connection.create_receiver("sorted", name="anyone", credit=count)
    assert receive(anyone, count // 2) == list(range(1, count, 2))


def test_a_browser_sees_the_messages_on_disk_as_they_are_read_back(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker()
    publish(broker, "shelf", numbered(300))
    assert broker.stats()["shelf"].paged > 150
    connection = connect(url)
    browser = connection.create_receiver(
        "shelf", name="browser", credit=300, options=proton.reactor.Copy()
    )
    assert [browser.receive(timeout=PROMPTLY).body for _ in range(300)] == list(range(300))
    assert broker.stats()["shelf"].depth == 300  # browsing took nothing
    consumer = connection.create_receiver("shelf", name="consumer", credit=300)
    assert receive(consumer, 300) == list(range(300))


# -- expiry ---------------------------------------------------------------------------------


def test_a_message_that_expired_on_disk_is_never_delivered(
    paging_broker: Any, connect: Any
) -> None:
    broker, url = paging_broker()
    publish(broker, "perishable", numbered(300, ttl=0.5))
    publish(broker, "perishable", [Message(body="lasting", durable=True)])
    assert broker.stats()["perishable"].paged > 150
    time.sleep(1)
    receiver = connect(url).create_receiver("perishable", name="consumer", credit=10)
    assert receive(receiver, 1) == ["lasting"]
    stats = broker.stats()["perishable"]
    assert (stats.expired, stats.depth, stats.paged) == (300, 0, 0)


# -- restarts ---------------------------------------------------------------------------


class BrokerProcess:
    """`python -m amqp_core.broker` with a data directory and options, on a port that
    stays the same across restarts."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "amqp_core.broker", "-a", self.url]
        self.command += ["--data-dir", str(data_dir), *options]
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, wait: bool = True) -> None:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(self.command, cwd=REPO)
        if wait:
            wait_for_port(self.port, timeout=PROMPTLY)

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None
        self.process.kill()
        self.process.wait(timeout=PROMPTLY)

    def stop(self) -> None:
        stop(self.process)

    def resident_mib(self, field: str = "VmRSS") -> float:
        """Its resident memory now (VmRSS), or at its peak so far (VmHWM), in MiB."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} for the broker")


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []

    def make(*options: str) -> BrokerProcess:
        process = BrokerProcess(tmp_path / "data", *options)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


def test_non_durable_messages_on_disk_do_not_come_back_after_kill_9(
    broker_process: Any, tmp_path: Path
) -> None:
    broker = broker_process("--max-memory", str(SMALL_BOUND))
    broker.start()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    sender = connection.create_sender("ledger", name="producer")
    for message in numbered(1_000):
        sender.send(proton.Message(body=message.body, durable=message.durable))
    connection.close()
    broker.kill()

    broker.start()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    receiver = connection.create_receiver("ledger", name="consumer", credit=100)
    assert receive(receiver, 500) == list(range(0, 1_000, 2))
    with pytest.raises(proton.Timeout):
        receiver.receive(timeout=QUIETLY)
    connection.close()
    broker.stop()
    # The non-durable ones the killed broker left on disk are deleted too.
    with MessageStore.open(tmp_path / "data") as store:
        assert list(store.load()) == []
        assert store.drop_stale(1) is False


def test_a_time_to_live_counts_from_arrival_across_a_restart(broker_process: Any) -> None:
    broker = broker_process()
    broker.start()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    sender = connection.create_sender("perishable", name="producer")
    sender.send(proton.Message(body="short-lived", durable=True, ttl=1))
    sender.send(proton.Message(body="long-lived", durable=True, ttl=60))
    connection.close()
    broker.stop()
    time.sleep(1.5)

    broker.start()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    receiver = connection.create_receiver("perishable", name="consumer", credit=10)
    assert receive(receiver, 1) == ["long-lived"]
    with pytest.raises(proton.Timeout):
        receiver.receive(timeout=QUIETLY)
    connection.close()


def test_the_gateways_embedded_broker_pages_with_max_memory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    flags = ["--data-dir", str(data_dir), "--max-memory", str(SMALL_BOUND)]
    with GatewayServer(tmp_path, *flags) as gateway:
        send(gateway.amqp, "ledger", *(proton.Message(body=n) for n in range(500)))
        assert gateway.post("ledger", {"last": True}).status_code == 201
    # Non-durable messages are in the store only when they were paged out.
    with sqlite3.connect(data_dir / STORE_FILE_NAME) as database:
        (paged,) = database.execute("SELECT count(*) FROM message WHERE transient = 1").fetchone()
    database.close()
    assert paged > 300
    # Not durable: they do not come back.
    with GatewayServer(tmp_path, *flags) as gateway:
        assert receive_all(gateway.amqp, "ledger") == []


def fill_store(data_dir: Path, address: str, count: int) -> None:
    """Store `count` durable messages with 100-byte bodies for `address` through the
    store's API, numbered by their message id from 0."""
    body = b"x" * 100
    with MessageStore.open(data_dir) as store:
        batch = 20_000
        for start in range(0, count, batch):
            numbers = range(start, min(count, start + batch))
            store.add_many(
                [(address, Message(id=n, body=body, durable=True).encode()) for n in numbers]
            )


def wait_for_connection(port: int, since: float, timeout: float) -> float:
    """Seconds from `since` until something accepts a connection on `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.monotonic() - since
        except OSError:
            time.sleep(0.01)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


#: Durable messages a restarted broker finds in its store in the recovery test: before
#: it listened at once, it loaded them all first (7 to 10 s for a million here).
RECOVERED = 1_000_000
#: Seconds the restarted broker may take to accept a connection, and to deliver the
#: first message: generous for a loaded machine, and far below loading them all.
LISTENS_WITHIN = 3.0
DELIVERS_WITHIN = 4.0


@pytest.mark.slow
def test_a_restart_with_a_million_stored_messages_listens_and_delivers_at_once(
    broker_process: Any, tmp_path: Path
) -> None:
    fill_store(tmp_path / "data", "recovered", RECOVERED)
    broker = broker_process()
    broker.start(wait=False)
    listening = wait_for_connection(broker.port, broker.started_at, timeout=60)
    connection = proton.utils.BlockingConnection(broker.url, timeout=60)
    receiver = connection.create_receiver("recovered", name="consumer", credit=10)
    first = receiver.receive(timeout=60)
    delivered = time.monotonic() - broker.started_at
    receiver.accept()
    assert first.id == 0
    connection.close()
    assert listening < LISTENS_WITHIN, f"listening after {listening:.1f} s"
    assert delivered < DELIVERS_WITHIN, f"first delivery after {delivered:.1f} s"


# -- memory ---------------------------------------------------------------------------------

#: The bounds the memory tests set: 8 MiB, and 32 MiB for the 2M-message queue.
FILL_BOUND = 8 * 2**20
DEEP_BOUND = 32 * 2**20
#: The broker's RSS without messages: the interpreter and the modules take about 30 MiB.
BASE_RSS = 40 * 2**20
#: What the broker's RSS may grow beyond its bound: SQLite's page cache, buffers, and
#: the garbage the collector has not returned yet. Measured: 64 MiB of RSS in all with
#: a bound of 32 MiB and 2M messages stored, where 2M messages take 600 MiB unbounded.
BEYOND_BOUND = 16 * 2**20

#: Messages sent over AMQP in the filling test: unbounded, they take about 60 MiB.
FILLED = 200_000
#: Messages stored for the 2M test, and those it drains in order (all 2M would take
#: three minutes: bench/broker.py --recovery 2000000 --max-memory 33554432 does).
DEEP = 2_000_000
DEEP_DRAINED = 200_000


@pytest.mark.slow
def test_filling_a_queue_over_amqp_stays_within_the_memory_bound(
    broker_process: Any, crowd: Callable[..., Any]
) -> None:
    broker = broker_process("--max-memory", str(FILL_BOUND))
    broker.start()
    producer = crowd("fill", broker.url, "deep", str(FILLED))
    assert producer.line() == "ready"
    before = broker.resident_mib()
    assert producer.line(timeout=300) == "done"
    grown = broker.resident_mib("VmHWM") - before
    consumer = crowd("ordered", broker.url, "deep", str(FILLED), "1000")
    assert consumer.line() == "ready"
    assert consumer.line(timeout=300) == "done"
    assert grown < (FILL_BOUND + BEYOND_BOUND) / 2**20, f"RSS grew by {grown:.0f} MiB"


@pytest.mark.slow
def test_two_million_durable_messages_take_the_memory_bound_and_little_more(
    broker_process: Any, tmp_path: Path, crowd: Callable[..., Any]
) -> None:
    fill_store(tmp_path / "data", "deep", DEEP)
    broker = broker_process("--max-memory", str(DEEP_BOUND))
    broker.start(wait=False)
    listening = wait_for_connection(broker.port, broker.started_at, timeout=60)
    assert listening < LISTENS_WITHIN, f"listening after {listening:.1f} s"
    # Nobody consumes: messages are read back up to the bound, and no further.
    time.sleep(5)
    rss = broker.resident_mib()
    consumer = crowd("ordered", broker.url, "deep", str(DEEP_DRAINED), "1000")
    assert consumer.line() == "ready"
    assert consumer.line(timeout=300) == "done"
    peak = broker.resident_mib("VmHWM")
    limit = (BASE_RSS + DEEP_BOUND + BEYOND_BOUND) / 2**20
    assert rss < limit and peak < limit, f"RSS {rss:.0f} MiB, peak {peak:.0f} MiB"
