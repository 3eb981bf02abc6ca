"""Durable messages survive the broker being killed with SIGKILL in the middle of a
stream, and consumption a consumer had confirmed stays done.

The broker runs with `--data-dir` as a subprocess. A producer and a consumer, each a
thread with a Qpid Proton connection of its own, run at full speed; the broker is killed
with SIGKILL mid-stream, restarted on the same port and data directory, and the queue is
drained. What a user relies on:

- every message whose outcome came back *accepted* to the producer, and that the
  consumer had not accepted before the kill, is delivered after the restart, once;
- no message whose consumption was *confirmed* comes back.

What "confirmed" means. The consumer accepts (settles) a message and goes on; the
broker may have been killed before it read that disposition, and then the message
legitimately comes back. So a consumption counts as confirmed only after a round trip
that the broker can only answer once it has processed the disposition: the consumer
takes its messages in batches, each on a link of its own, and after accepting a batch
it detaches the link and waits for the broker's detach. Frames on a connection are
processed in order, and Proton writes pending dispositions before a detach in the same
output pass; the broker writes the store before anything it answers in the same pass
(see amqp_core/broker/server.py). A message the consumer accepted but whose batch was
not yet confirmed may come back or not; the test asserts nothing about it.

The same test runs with a memory bound so small (`--max-memory`) that the backlog is on
disk only: the broker is killed while it pages messages out and reads them back.

A second test: the delivery count of a durable message (after modified with
delivery-failed) survives a restart too.

Every wait is bounded; every process started is stopped by its PID.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import proton
import proton.utils
import pytest
from processes import free_port, stop, wait_for_port

REPO = Path(__file__).resolve().parent.parent

#: How long a test waits for something that should happen at once (generous: the
#: machine is shared and loaded).
PROMPTLY = 10.0
#: How long the load may take to reach the point where the broker is killed.
LOAD_DEADLINE = 60.0

#: The consumer confirms its consumption every BATCH messages.
BATCH = 25
#: The broker is killed once the consumer confirmed this many messages and the producer
#: had this many more accepted since: well into the stream, both still running.
KILL_AFTER_CONFIRMED = 100
KILL_AFTER_MORE = 200


#: A memory bound of about ten of the test's messages: the backlog is on disk only.
TINY_MEMORY_BOUND = 2048


class BrokerProcess:
    """`python -m amqp_core.broker` with a data directory (and other options), on a port
    that stays the same across restarts; its output is appended to a log file."""

    def __init__(self, data_dir: Path, log: Path, *options: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log = log
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "amqp_core.broker", "-a", self.url]
        command += ["--data-dir", str(self.data_dir), *self.options]
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL: no chance to write or close anything."""
        assert self.process is not None
        assert self.process.poll() is None, f"the broker died early:\n{self.output()}"
        self.process.kill()
        self.process.wait(timeout=PROMPTLY)

    def stop(self) -> None:
        stop(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture(params=["in memory", "paging"])
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BrokerProcess]:
    """A broker that keeps its backlog in memory, or (with a tiny memory bound) on disk."""
    options = ["--max-memory", str(TINY_MEMORY_BOUND)] if request.param == "paging" else []
    process = BrokerProcess(tmp_path / "data", tmp_path / "broker.log", *options)
    process.start()
    yield process
    process.stop()


class Worker(threading.Thread):
    """A thread with a Proton connection of its own. It ends when its connection fails
    (as it does when the broker is killed) or, should the test fail first, when told
    to stop."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.disconnected = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def run(self) -> None:
        connection = None
        try:
            connection = proton.utils.BlockingConnection(self.url, timeout=PROMPTLY)
            self.work(connection)
        except proton.ConnectionException:
            self.disconnected = True  # the broker was killed: what happened is recorded
        except BaseException as error:
            self.error = error
        finally:
            # Not after a disconnect: Proton's close() then waits out its whole timeout
            # for a close frame from the dead peer.
            if connection is not None and not connection.disconnected:
                connection.close()
            self.notify()

    def work(self, connection: Any) -> None:
        raise NotImplementedError

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            self.changed.wait_for(lambda: condition() or not self.is_alive(), timeout)
            return condition()

    def stop(self) -> None:
        self.stopping.set()
        self.join(PROMPTLY)

    def __repr__(self) -> str:
        return f"<{self.name} alive={self.is_alive()} error={self.error!r}>"


class Producer(Worker):
    """Sends durable messages numbered 0, 1, 2, ... as fast as credit allows, and records
    the numbers whose outcome came back accepted."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "producer")
        self.sent = 0
        self.accepted: list[int] = []
        self.refused: list[tuple[int, Any]] = []

    def work(self, connection: Any) -> None:
        sender = connection.create_sender("ledger", name="producer")
        pending: dict[Any, int] = {}
        try:
            while not self.stopping.is_set():
                if not sender.link.credit:
                    connection.wait(lambda: sender.link.credit > 0 or self.stopping.is_set())
                    self._collect(pending)
                    continue
                delivery = sender.link.send(proton.Message(body=self.sent, durable=True))
                pending[delivery] = self.sent
                self.sent += 1
        finally:
            self._collect(pending)

    def _collect(self, pending: dict[Any, int]) -> None:
        """Record the outcomes that came back since the last time."""
        for delivery, number in list(pending.items()):
            if delivery.remote_state:
                del pending[delivery]
                if delivery.remote_state == proton.Delivery.ACCEPTED:
                    self.accepted.append(number)
                else:
                    self.refused.append((number, delivery.remote_state))
                delivery.settle()
        self.notify()


class Consumer(Worker):
    """Receives and accepts messages; each batch on a link of its own, confirmed by
    detaching that link and waiting for the broker's detach (see the module's notes)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "consumer")
        self.accepted: list[int] = []  # settled as accepted here, confirmed or not
        self.confirmed: list[int] = []

    def work(self, connection: Any) -> None:
        batches = 0
        while not self.stopping.is_set():
            batches += 1
            receiver = connection.create_receiver("ledger", name=f"batch-{batches}", credit=BATCH)
            batch = []
            for _ in range(BATCH):
                message = receiver.receive(timeout=PROMPTLY)
                receiver.accept()
                batch.append(message.body)
                self.accepted.append(message.body)
            # The broker answers this detach only after the dispositions before it.
            receiver.close()
            self.confirmed.extend(batch)
            self.notify()


def drain_until(url: str, last: str) -> list[Any]:
    """Every message on the queue, accepted, up to the one whose body is `last`."""
    connection = proton.utils.BlockingConnection(url, timeout=PROMPTLY)
    try:
        receiver = connection.create_receiver("ledger", name="drain", credit=100)
        bodies: list[Any] = []
        while not bodies or bodies[-1] != last:
            if receiver.link.credit < 50:
                receiver.link.flow(100 - receiver.link.credit)
            bodies.append(receiver.receive(timeout=PROMPTLY).body)
            receiver.accept()
        return bodies[:-1]
    finally:
        connection.close()


def test_acknowledged_messages_survive_sigkill_under_load(broker: BrokerProcess) -> None:
    producer = Producer(broker.url)
    consumer = Consumer(broker.url)
    producer.start()
    try:
        # The consumer starts behind the producer, so that the queue has a backlog.
        assert producer.wait_until(lambda: len(producer.accepted) >= 200, LOAD_DEADLINE), producer
        consumer.start()
        assert consumer.wait_until(
            lambda: len(consumer.confirmed) >= KILL_AFTER_CONFIRMED, LOAD_DEADLINE
        ), consumer
        # Timed by the producer, so that the kill falls anywhere in a consumer's batch.
        target = len(producer.accepted) + KILL_AFTER_MORE
        assert producer.wait_until(lambda: len(producer.accepted) >= target, LOAD_DEADLINE), (
            producer
        )
        assert producer.is_alive() and consumer.is_alive(), (producer, consumer)
        broker.kill()
        # Both find out on their own, from their connections.
        producer.join(PROMPTLY)
        consumer.join(PROMPTLY)
    finally:
        producer.stop()
        consumer.stop()
    for worker in (producer, consumer):
        assert not worker.is_alive() and worker.error is None and worker.disconnected, worker

    accepted = set(producer.accepted)
    consumed = set(consumer.accepted)
    confirmed = set(consumer.confirmed)
    owed = accepted - consumed
    assert not producer.refused
    # The kill came mid-stream: there were messages owed, and consumption confirmed.
    assert owed and confirmed

    broker.start()
    # Whatever was stored comes back in its order, ahead of a message sent now.
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    try:
        connection.create_sender("ledger", name="marker").send(proton.Message(body="end"))
    finally:
        connection.close()
    after = drain_until(broker.url, "end")

    assert len(after) == len(set(after)), "a message was delivered twice after the restart"
    lost = sorted(owed - set(after))
    assert not lost, f"{len(lost)} accepted messages lost: {lost[:20]}"
    back = sorted(confirmed & set(after))
    assert not back, f"{len(back)} confirmed consumptions came back: {back[:20]}"
    assert set(after) <= set(range(producer.sent))


def test_delivery_count_of_a_durable_message_survives_a_restart(broker: BrokerProcess) -> None:
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    try:
        sender = connection.create_sender("retries", name="producer")
        sender.send(proton.Message(body="retry me", durable=True))
        receiver = connection.create_receiver("retries", name="consumer")
        counts = []
        for _ in range(2):
            message = receiver.receive(timeout=PROMPTLY)
            counts.append(message.delivery_count)
            delivery = receiver.fetcher.unsettled.popleft()
            delivery.local.failed = True  # modified, delivery-failed: one more attempt
            delivery.update(proton.Delivery.MODIFIED)
            delivery.settle()
        assert counts == [0, 1]
        # Confirmed as above: the broker answers the detach after the dispositions.
        receiver.close()
    finally:
        connection.close()
    broker.kill()

    broker.start()
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    try:
        receiver = connection.create_receiver("retries", name="after-restart")
        message = receiver.receive(timeout=PROMPTLY)
        receiver.accept()
        assert (message.body, message.delivery_count) == ("retry me", 2)
    finally:
        connection.close()
